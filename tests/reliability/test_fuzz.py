"""Fuzzed parameters (Hypothesis): every route's path and query, and the admin config JSON.

Each generated request is judged by an oracle written from the README's contract, not from
the code: a malformed parameter is a 400 naming it (JSON on /api routes, HTML elsewhere), an
unknown id, board or page a 404, anything else a 200 with the documented body — and never a
500. Each generated config is either taken whole (and shows as given) or refused whole with a
400 and its reason, the config unchanged. One server per mode serves a whole module.
"""

from __future__ import annotations

import http.client
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fakeforum import FakeForumServer, Forum
from fakeforum.activity import parse_rate
from fakeforum.app import MAX_LIMIT, MAX_PER_PAGE, PAGE_SIZE
from fakeforum.latency import parse_latency

from .support import assert_healthy

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)
FORUM = Forum.generate(seed=0)  # the content every server here serves
SUBJECT_IDS = FORUM.subject_ids()
BOARDS = {b.slug: len(FORUM.subject_ids(b.slug)) for b in FORUM.boards()}
REPLIES = {i: len(s.replies) for i in SUBJECT_IDS if (s := FORUM.subject(i)) is not None}


class Client:
    """One keep-alive connection that sends targets exactly as given."""

    def __init__(self, server: FakeForumServer) -> None:
        self.connection = http.client.HTTPConnection(server.host, server.port, timeout=30)

    def send(
        self, method: str, target: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.connection.request(method, target, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.will_close:
            self.connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self.connection.close()


@pytest.fixture(scope="module", params=["thread", "process"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[FakeForumServer, Client]]:
    """One server per mode for the whole module, and a client for it."""
    with FakeForumServer(mode=request.param) as server:
        client = Client(server)
        try:
            yield server, client
        finally:
            client.close()


# -- the public routes ------------------------------------------------------------------------

# The query parameters of each route: (minimum, maximum) of the whole number it takes.
PARAMS: dict[str, dict[str, tuple[int, int | None]]] = {
    "index": {},
    "board": {"page": (1, None)},
    "subject_html": {"page": (1, None)},
    "subject_atom": {},
    "api_boards": {},
    "api_subjects": {"page": (1, None), "per_page": (1, MAX_PER_PAGE)},
    "api_subject": {},
    "api_replies": {"since": (0, None), "limit": (1, MAX_LIMIT)},
}
TEMPLATES = {
    "index": "/",
    "board": "/boards/{}",
    "subject_html": "/subjects/{}",
    "subject_atom": "/subjects/{}.atom",
    "api_boards": "/api/boards",
    "api_subjects": "/api/subjects",
    "api_subject": "/api/subjects/{}",
    "api_replies": "/api/subjects/{}/replies",
}
TRICKY_NUMBERS = [
    "", " ", "1.5", "1e3", "+1", "-0", "-1", "0x10", "1_0", "00", " 1", "1 ", "NaN", "inf",
    "\uff13", "\u0661", "\u00b9", "9" * 19, "0" * 30 + "1", "1" * 40,
]  # fmt: skip
# No '/': an encoded slash decodes into the path and makes another route, not a junk segment.
JUNK = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/"), min_size=1, max_size=20
)


def _ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def segments(route: str) -> st.SearchStrategy[str]:
    """The path parameter of a route: a real one, an unknown one, or junk."""
    if route == "board":
        return st.one_of(st.sampled_from(sorted(BOARDS)), st.just("board-99"), JUNK)
    return st.one_of(
        st.sampled_from(SUBJECT_IDS).map(str),
        st.integers(max(SUBJECT_IDS) + 1, 10**30).map(str),
        st.just("0"),
        st.sampled_from(TRICKY_NUMBERS).filter(bool),
        JUNK.filter(lambda s: not re.fullmatch(r"[0-9]+\.atom", s)),
    )


def values(minimum: int, maximum: int | None) -> st.SearchStrategy[str]:
    """A query value: in range, any whole number, a tricky near-number, or any text."""
    return st.one_of(
        st.integers(minimum, maximum if maximum is not None else 50).map(str),
        st.integers(-(10**6), 10**20).map(str),
        st.sampled_from(TRICKY_NUMBERS),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    )


@dataclass(frozen=True)
class Case:
    """One generated request."""

    method: str
    route: str
    segment: str | None
    query: tuple[tuple[str, str], ...]

    @property
    def target(self) -> str:
        template = TEMPLATES[self.route]
        segment = quote(self.segment or "", safe="")
        path = template.format(segment) if "{}" in template else template
        return path + ("?" + urlencode(self.query, quote_via=quote) if self.query else "")

    @property
    def first(self) -> dict[str, str]:
        """Each parameter's first value: the one the app reads."""
        out: dict[str, str] = {}
        for name, value in self.query:
            out.setdefault(name, value)
        return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    route = draw(st.sampled_from(sorted(TEMPLATES)))
    segment = draw(segments(route)) if "{}" in TEMPLATES[route] else None
    pairs = [
        (name, draw(values(*bounds)))
        for name, bounds in PARAMS[route].items()
        if draw(st.booleans())
    ]
    pairs = draw(st.permutations(pairs))
    # Repeated and unknown parameters after them: the first value of a name is the one read.
    extra_names = st.sampled_from([*PARAMS[route], "x", "page", "callback", "r"])
    pairs += draw(st.lists(st.tuples(extra_names, st.text(max_size=10)), max_size=2))
    method = draw(st.sampled_from(["GET"] * 6 + ["HEAD", "POST", "DELETE"]))
    return Case(method, route, segment, tuple(pairs))


@dataclass(frozen=True)
class Expected:
    """What the contract allows for a case: statuses, and the parameters a 400 may name."""

    statuses: frozenset[int]
    bad: frozenset[str]


def oracle(case: Case) -> Expected:
    """The answers README's contract allows for a GET (or HEAD) of this case."""
    route, segment = case.route, case.segment
    if route == "board":
        known = segment in BOARDS
        last_page = max(1, math.ceil(BOARDS.get(segment or "", 0) / PAGE_SIZE))
    elif segment is not None:
        known = _ascii_number(segment) and int(segment) in REPLIES
        last_page = max(1, math.ceil(REPLIES.get(int(segment), 0) / PAGE_SIZE)) if known else 1
    else:
        known, last_page = True, 1
    bad: set[str] = set()
    past_end = False
    allowed: set[int] = set()
    for name, (minimum, maximum) in PARAMS[route].items():
        raw = case.first.get(name)
        if raw is None:
            continue
        if not _ascii_number(raw):
            bad.add(name)
        elif len(raw) > 18:
            # A whole number too long to mean anything: refused as malformed, or taken as a
            # page past the end (404, or an empty API page).
            bad.add(name)
            allowed.add(200 if route == "api_subjects" else 404)
        elif int(raw) < minimum or (maximum is not None and int(raw) > maximum):
            bad.add(name)
        elif name == "page" and route in ("board", "subject_html") and int(raw) > last_page:
            past_end = True
    if bad:
        allowed.add(400)
    if not known:
        allowed.add(404)
    if past_end and not bad:
        allowed.add(404)
    if not allowed:
        allowed.add(200)
    return Expected(frozenset(allowed), frozenset(bad))


def check_body(case: Case, status: int, headers: dict[str, str], body: bytes) -> None:
    """The response's body is in the form its route and status promise."""
    api = case.route.startswith("api_")
    kind = headers.get("content-type", "")
    if case.method == "HEAD":
        assert body == b""
        return
    if status == 200 and case.route == "subject_atom":
        assert kind.startswith("application/atom+xml")
        return
    if not api:
        assert kind.startswith("text/html"), kind
        if status == 400:
            named = re.findall(r"Parameter &#x27;(\w+)&#x27;", body.decode())
            assert named, body[:300]
            assert named[0] in oracle(case).bad, body[:300]
        return
    assert kind.startswith("application/json"), kind
    data = json.loads(body)
    if status == 400:
        assert data["status"] == 400
        assert data["parameter"] in oracle(case).bad, data
        assert f"'{data['parameter']}'" in data["message"]
    elif status == 404:
        assert data["status"] == 404
        assert data["message"]
    elif case.route == "api_subjects":
        per_page = int(case.first.get("per_page", PAGE_SIZE))
        assert data["page"] == int(case.first.get("page", 1))
        assert data["per_page"] == per_page
        assert len(data["subjects"]) <= per_page
    elif case.route == "api_replies":
        since = int(case.first.get("since", 0))
        assert data["subject_id"] == int(case.segment or 0)
        assert len(data["replies"]) <= int(case.first.get("limit", 100))
        assert all(r["id"] > since for r in data["replies"])


@FUZZ
@given(case=cases())
# Defects this test found, kept as examples so that every run tries them.
@example(case=Case("GET", "api_replies", "\uff13", ()))  # a full-width 3 served subject 3
@example(case=Case("POST", "api_subject", "\u0661", ()))  # 405, as if an Arabic-Indic 1 were an id
def test_fuzzed_paths_and_queries_get_the_documented_answer(
    served: tuple[FakeForumServer, Client], case: Case
) -> None:
    _, client = served
    status, headers, body = client.send(case.method, case.target)
    event(f"{case.method} answered {status}")
    assert status != 500, body[:500]
    if case.method in ("GET", "HEAD"):
        expected = oracle(case)
        assert status in expected.statuses, (case.target, status, body[:300])
        check_body(case, status, headers, body)
    else:
        # A route that exists answers 405 naming GET; a path that matches none, 404.
        assert status in (404, 405), (case.target, status)
        if status == 405:
            assert "GET" in headers["allow"]
            matchable = case.segment is None or case.route == "board"
            assert matchable or _ascii_number(case.segment or ""), case.target


def test_the_route_fuzzing_left_the_server_healthy(
    served: tuple[FakeForumServer, Client],
) -> None:
    server, _ = served
    assert_healthy(server)


# -- the admin config --------------------------------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
JSON_ANY = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)

# Valid settings, as the README documents them.
GLOB = st.sampled_from(["*", "/api/*", "/subjects/*/replies", "/boards/board-1"])
DURATION = st.builds(
    lambda n, unit: f"{n}{unit}",
    st.one_of(st.integers(0, 3_600), st.floats(0, 1).map(lambda f: f"{f:.9f}")),
    st.sampled_from(["us", "ms", "s"]),
)
SHORT = st.builds(lambda n: f"{n}ms", st.integers(0, 3_600_000))  # up to an hour
LATENCY_SPEC = st.one_of(
    st.just("0"),
    DURATION,
    st.builds(
        lambda a, b: f"{min(a, b)}ms..{max(a, b)}ms", st.integers(0, 10**6), st.integers(0, 10**6)
    ),
    st.builds(lambda mean, sd: f"{mean}~{sd}", SHORT, SHORT),
    st.builds(
        lambda median, sigma: f"lognormal({median}, {sigma:g})",
        SHORT,
        st.floats(0, 3_600, allow_nan=False),
    ),
)
LATENCY = st.one_of(st.none(), LATENCY_SPEC, st.dictionaries(GLOB, LATENCY_SPEC, max_size=3))
RATE = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(1, 10_000), st.sampled_from(["/s", "/min", "/h"])
)
BANDWIDTH = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(1, 10**6), st.sampled_from(["B/s", "KB/s", "MiB/s"])
)
CHANCE = st.one_of(st.floats(0, 1), st.sampled_from([0, 1]))
FAULT_RULE = st.one_of(
    st.fixed_dictionaries(
        {"kind": st.sampled_from(["reset", "empty", "truncate", "hang"]), "route": GLOB},
        optional={"p": CHANCE},
    ),
    st.fixed_dictionaries(
        {"kind": st.just("status"), "status": st.integers(200, 599), "p": CHANCE}
    ),
    st.fixed_dictionaries(
        {"kind": st.just("429"), "retry_after": st.integers(0, 3_600), "times": st.integers(1, 9)}
    ),
    st.fixed_dictionaries({"kind": st.just("slow_body"), "bandwidth": BANDWIDTH}),
)
VALID_CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "latency": LATENCY,
        "bandwidth": st.one_of(st.none(), BANDWIDTH, st.integers(1, 10**9)),
        "faults": st.one_of(st.none(), st.lists(FAULT_RULE, max_size=3)),
        "seed": st.integers(-(10**30), 10**30),
        "activity": st.one_of(st.none(), RATE),
    },
)
# Near misses: the forms above bent a little (units, signs, bounds, types).
NEAR_NUMBER = st.sampled_from(
    ["-1", "1e3", "", "x", ".5", "0.000000001", "1" * 30, "nan", "inf", "3601", "-0.5"]
)
NEAR_SPEC = st.one_of(
    st.builds(lambda n, u: n + u, NEAR_NUMBER, st.sampled_from(["", "m", "h", " ms", "ms"])),
    st.builds(lambda a, b: f"{a}..{b}", DURATION, st.sampled_from(["1ms", "x", "", "2h"])),
    st.builds(lambda a, b: f"lognormal({a}, {b})", SHORT, NEAR_NUMBER),
    st.text(max_size=20),
)
NEAR_MISS: dict[str, st.SearchStrategy[Any]] = {
    "latency": st.one_of(NEAR_SPEC, st.dictionaries(st.text(max_size=4), NEAR_SPEC, min_size=1)),
    "bandwidth": st.one_of(
        st.builds(lambda n, u: n + u, NEAR_NUMBER, st.sampled_from(["B/s", "b/s", "KB", ""])),
        st.sampled_from([0, -5, float("inf"), float("nan"), True]),
    ),
    "faults": st.one_of(
        st.lists(
            st.one_of(
                FAULT_RULE.map(lambda r: {**r, "p": 1.5}),
                FAULT_RULE.map(lambda r: {**r, "kind": "boom"}),
                FAULT_RULE.map(lambda r: {**r, "times": 0}),
                FAULT_RULE.map(lambda r: {**r, "status": 99}),
                FAULT_RULE.map(lambda r: {**r, "colour": "red"}),
                FAULT_RULE.map(lambda r: {**r, "route": ""}),
            ),
            min_size=1,
            max_size=3,
        ),
        st.sampled_from([5, True, "reset", {"kind": "reset"}, 1.5]),
    ),
    "seed": st.sampled_from([1.5, "1", True, float("nan")]),
    "activity": st.one_of(
        st.builds(lambda n, u: n + u, NEAR_NUMBER, st.sampled_from(["/s", "/x", "", "/day"])),
        st.sampled_from([0, -1, 10_001, float("inf"), True, "fast"]),
    ),
}


@st.composite
def config_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A PUT body and what it is: "valid" (must be taken), "bent" (a valid config with one
    setting bent into a near miss) or "any" (anything at all, JSON or not)."""
    kind = draw(st.sampled_from(["valid", "valid", "bent", "bent", "any"]))
    if kind == "valid":
        return kind, json.dumps(draw(VALID_CONFIG)).encode()
    if kind == "bent":
        key = draw(st.sampled_from(sorted(NEAR_MISS)))
        config = {**draw(VALID_CONFIG), key: draw(NEAR_MISS[key])}
        if draw(st.booleans()):
            config["latnecy"] = "5ms"  # an unknown key as well
        return kind, json.dumps(config).encode()
    return kind, draw(
        st.one_of(
            JSON_ANY.map(lambda v: json.dumps(v).encode()),
            st.dictionaries(st.sampled_from(sorted(NEAR_MISS)), JSON_ANY).map(
                lambda c: json.dumps(c).encode()
            ),
            st.binary(max_size=40),
            st.sampled_from(
                [
                    b"[" * 100_000,
                    b'{"faults": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                    b'{"faults": [{"kind": ' + b"[" * 900 + b"]" * 900 + b"}]}",
                ]
            ),
        )
    )


def samples_are_finite(spec: Any) -> bool:
    """Whether a latency spec's delays are finite numbers for every draw, the extreme ones
    included (the server samples one per request, on its event loop)."""
    latency = parse_latency(spec)
    draws = [0.0, 0.5, 1.0 - 2.0**-53]
    return all(
        math.isfinite(latency.sample(u1, u2)) and latency.sample(u1, u2) >= 0
        for u1 in draws
        for u2 in (0.0, 0.25, 0.5)
    )


@FUZZ
@given(case=config_bodies())
# Defects this test found, kept as examples so that every run tries them.
@example(case=("any", b'{"faults": 5}'))  # TypeError: a 500
@example(case=("any", b"[" * 100_000))  # RecursionError: a 500
@example(case=("valid", b'{"latency": "lognormal(1ms, 83)"}'))  # exp() overflowed per request
@example(case=("valid", b'{"latency": "0.000000001ms"}'))  # shown as 1e-06us, refused back
@example(case=("valid", b'{"latency": "0.069690402s"}'))  # shown back changed: 69690.4us, 69.6904ms
def test_fuzzed_config_is_taken_whole_or_refused_whole(
    served: tuple[FakeForumServer, Client], case: tuple[str, bytes]
) -> None:
    kind, body = case
    server, client = served
    _, _, before = client.send("GET", "/_fakeforum/config")
    status, headers, answer = client.send("PUT", "/_fakeforum/config", body)
    event(f"{kind} config answered {status}")  # --hypothesis-show-statistics shows the mix
    assert status in (200, 400), (body[:300], status, answer[:500])
    assert headers["content-type"].startswith("application/json")
    data = json.loads(answer)
    _, _, after = client.send("GET", "/_fakeforum/config")
    if status == 400:
        assert kind != "valid", f"a valid config was refused: {data['message']}"
        assert isinstance(data["message"], str)
        assert len(data["message"]) > 10
        assert json.loads(after) == json.loads(before), "a refused config changed something"
        return
    given_config = json.loads(body or b"{}")  # an empty body changes nothing
    shown = json.loads(after)
    assert data == shown
    if "seed" in given_config:
        assert shown["seed"] == given_config["seed"]
    if "activity" in given_config:
        rate = given_config["activity"]
        assert shown["activity"] == (None if rate is None else parse_rate(rate))
    if "faults" in given_config:
        assert len(shown["faults"]) <= len(given_config["faults"] or [])
    latency = given_config.get("latency")
    if "latency" in given_config:
        globs = list(latency) if isinstance(latency, dict) else ([] if latency is None else ["*"])
        assert list(shown["latency"]) == globs
    specs = latency.values() if isinstance(latency, dict) else [latency]
    assert all(samples_are_finite(spec) for spec in specs), f"an accepted spec in {latency}"
    # What GET shows, PUT takes back unchanged.
    again, _, _ = client.send("PUT", "/_fakeforum/config", json.dumps(shown).encode())
    _, _, shown_again = client.send("GET", "/_fakeforum/config")
    assert again == 200
    assert json.loads(shown_again) == shown
    server.reset()  # no activity, latency or faults left running for the next example


def test_the_config_fuzzing_left_the_server_healthy(
    served: tuple[FakeForumServer, Client],
) -> None:
    server, _ = served
    assert_healthy(server)
    assert server.config == {
        "latency": {},
        "bandwidth": None,
        "faults": [],
        "seed": 0,
        "activity": None,
    }

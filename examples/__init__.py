"""Small crawlers written as users write them: one right, several wrong on purpose."""

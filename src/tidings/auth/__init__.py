"""People (users, sessions) and machines (API keys) proving who they are."""

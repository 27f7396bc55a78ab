"""Charter's OAuth2 authorization server (Authlib on Flask): users, clients, keys, tokens."""

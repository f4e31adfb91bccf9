"""The web playground: a page served by the gateway to try the API in a browser (no separate front end)."""

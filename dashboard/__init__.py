"""The browser dashboard: server-rendered pages over selectors, made live by the Channels consumers."""

"""Local fake platform servers for offline tests: the real client libraries talk to them."""

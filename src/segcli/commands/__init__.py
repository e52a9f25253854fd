"""One module per command; each exposes run(cfg) and is imported only when its command runs."""

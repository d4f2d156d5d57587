"""`imgd run`: the daemon's wiring, its socket server, the request handlers and library opening."""

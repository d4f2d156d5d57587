"""How front ends ask: the facade (daemon else in-process), the socket client, shared thumbnails."""

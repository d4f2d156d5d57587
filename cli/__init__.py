"""The Click front end: parses arguments, calls the engine, prints."""

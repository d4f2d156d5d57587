"""The imgd engine: catalog, index, embedder, watcher and daemon; never prints, never exits."""

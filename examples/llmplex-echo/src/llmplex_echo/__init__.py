"""An example llmplex provider plugin: the Echo service (a tiny HTTP protocol of its own),
its provider class and its local emulator. See the package's README."""

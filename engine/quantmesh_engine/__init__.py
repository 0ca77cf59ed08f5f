"""QuantMesh engine: a grid market maker with its own web page and HTTP API. Never imports Django."""

__version__ = "1.0.0"

"""Says hello: the one dependency of the layer-caching lab's app."""

__version__ = "1.0"


def hello(name: str = "world") -> str:
    """A greeting for `name`."""
    return f"Hello, {name}!"

"""unroll: compile iterative algorithms into trainable PyTorch networks.

    import unroll
    Net = unroll.load("lista", layers=16)      # compile (cached) and import
    net = Net(A=A, lam=0.1)

`import unroll` stays light: torch is imported only when `load` is called or `unroll.train` (the
trainer) is first used.
"""

__version__ = "0.1.0"


def load(spec, **options):
    """Compile SPEC (a path or a shipped spec name) and return the generated class.

    Options are those of `unrollc compile`: layers, tie, untie, learn, freeze,
    class_name.  The generated source is cached on disk, keyed by the content
    hash of spec + options + compiler version.
    """
    from unroll.runtime.loader import load as _load

    return _load(spec, **options)


def __getattr__(name):
    if name == "train":  # imported on first use: it needs torch
        import importlib

        return importlib.import_module("unroll.train")
    raise AttributeError(f"module 'unroll' has no attribute {name!r}")


__all__ = ["__version__", "load", "train"]

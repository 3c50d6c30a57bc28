"""`unroll.load(spec, **options)`: compile (cached on disk) and import a generated module."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

from unroll.compiler import CompileError
from unroll.compiler.driver import VERSION, compile_source, make_options, read_spec, resolve_spec

from .module import UnrolledModule


@lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """Hash of the compiler's own sources: a changed compiler never serves stale cached modules."""
    import unroll.compiler as package

    digest = hashlib.sha256(VERSION.encode())
    root = Path(package.__file__).parent
    for f in sorted(root.rglob("*.py")) + sorted(root.rglob("*.lark")):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where compiled modules are kept: $UNROLL_CACHE, else ~/.cache/unroll."""
    root = os.environ.get("UNROLL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unroll")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def load(spec, layers=None, tie=None, untie=None, learn=None, freeze=None, class_name=None, backward=None):
    """Compile SPEC with the given options and return the generated class.

    The source is cached under `cache_dir()`, keyed by the SHA-256 of the spec
    text, the options and the compiler (version and sources).  Mistakes in the spec or the
    options raise `unroll.compiler.CompileError`, whose message is the
    formatted diagnostic.  `backward` is the backward mode: "unroll" (the default), "checkpoint:K"
    or "implicit:TOL" (see `unrollc compile --help`).
    """
    path = resolve_spec(str(spec))
    return load_text(read_spec(path), path.stem, str(path), layers=layers, tie=tie, untie=untie, learn=learn,
                     freeze=freeze, class_name=class_name, backward=backward)


def load_text(text: str, stem: str, path: str = "<spec>", **options):
    """`load` of spec text: the class compiled from TEXT (`stem` names the cached file, `path` appears in
    diagnostics).  The class remembers the text and the options (`_unroll_recipe`), so that its instances
    pickle by recipe and rebuild in a fresh process or under another compiler (runtime/persist.py)."""
    compile_options = make_options(**options)
    key = hashlib.sha256(f"{compiler_fingerprint()}\x00{text}\x00{compile_options.text()}".encode()).hexdigest()[:20]
    target = cache_dir() / f"{stem}_{key}.py"
    if not target.exists():
        source = compile_source(text, path, compile_options)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        tmp.replace(target)  # atomic: concurrent loaders never see a half-written file
    module_name = f"unroll_generated_{stem}_{key}"
    module = sys.modules.get(module_name)
    if module is None:
        spec_obj = importlib.util.spec_from_file_location(module_name, target)
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[module_name] = module
        spec_obj.loader.exec_module(module)
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, UnrolledModule) and value is not UnrolledModule:
            value._unroll_recipe = {"text": text, "stem": stem, "options": {k: v for k, v in options.items()
                                                                             if v is not None}}
            return value
    raise CompileError([], None)  # unreachable for compiler output


__all__ = ["cache_dir", "load", "load_text"]

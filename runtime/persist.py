"""Pickling generated networks: `torch.save(net)`, `pickle.dumps(net)`, multiprocessing workers.

A class that `unroll.load` compiled lives in a module named after a hash of the spec, the options and the
compiler's sources (`unroll_generated_lista_<hash>`): a fresh process, or one with another compiler
version, has no such module.  So an instance of such a class pickles by *recipe*: the spec text and the
compile options travel with the instance's state, and unpickling compiles the spec again (through the
on-disk cache) and restores the state into the rebuilt class.  The parameters, buffers and constants are
restored exactly; the code is the unpickling process's compiler's.

A class defined in an importable module (a file written by `unrollc compile` and imported by its module
name) pickles by reference, as any Python class.
"""

from __future__ import annotations


def reduce_module(net, protocol: int):
    """`__reduce_ex__` of a generated network (see the module docstring)."""
    recipe = type(net).__dict__.get("_unroll_recipe")
    if recipe is None:
        return object.__reduce_ex__(net, protocol)
    return rebuild, (recipe, net.__getstate__())


def rebuild(recipe: dict, state: dict):
    """Unpickle a network: compile `recipe` (spec text and options) with this process's compiler and put
    `state` (the pickled instance's attributes) into a new instance of the class."""
    from .loader import load_text

    cls = load_text(recipe["text"], recipe["stem"], f"<pickled {recipe['stem']}>", **recipe["options"])
    net = cls.__new__(cls)
    net.__setstate__(state)
    return net


__all__ = ["rebuild", "reduce_module"]

"""Put on the path of the command ``dlprof run`` starts (and only there, through PYTHONPATH):
in each Python process with ``DLPROF_RUN_OUT`` set, DataLoader is patched once torch has been
imported (``dlprof.probe.autowrap``); a process that never imports torch is left alone. The
``sitecustomize`` this one shadows on the path, if any, runs too."""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Run the sitecustomize module this one hides (a distribution's or a virtualenv's)."""
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


class _AfterTorch(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of ``torch`` so that dlprof installs once torch's
    own import has finished."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)  # once
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            from dlprof.probe.autowrap import install

            install()

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("DLPROF_RUN_OUT"):
    # the dlprof that runs the command, whether or not this interpreter has one installed (or
    # another version): loaded from its folder, with nothing put on sys.path that could shadow
    # the program's own modules
    _root = os.environ.get("DLPROF_PACKAGE_ROOT")
    if _root and "dlprof" not in sys.modules:
        _spec = importlib.util.spec_from_file_location("dlprof", os.path.join(_root, "dlprof", "__init__.py"),
                                                       submodule_search_locations=[os.path.join(_root, "dlprof")])
        _module = importlib.util.module_from_spec(_spec)
        sys.modules["dlprof"] = _module
        _spec.loader.exec_module(_module)
    if "torch" in sys.modules:
        from dlprof.probe.autowrap import install

        install()
    else:
        sys.meta_path.insert(0, _AfterTorch())
_chain()

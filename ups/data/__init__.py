"""Burgers data: PDEBench initial conditions, ETDRK4 solver, PDEBench-layout HDF5, cache, protocol.

Ray-free. Public entry points: ``load_protocol``, ``dataset_path``, ``solve_burgers``, ``init_multi``,
``read_pdebench`` / ``write_pdebench``. They load on first use (PEP 562), so that ``ups data`` refuses a mistyped
key before importing torch and h5py.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from ups.data.cache import DataConfigError, dataset_path
    from ups.data.hdf5 import BurgersFile, DataFileError, read_pdebench, write_pdebench
    from ups.data.initial import init_multi
    from ups.data.protocol import ProtocolData, ProtocolError, load_protocol
    from ups.data.solver import SolverError, solve_burgers

_HOME = {"DataConfigError": "cache", "dataset_path": "cache",
         "BurgersFile": "hdf5", "DataFileError": "hdf5", "read_pdebench": "hdf5", "write_pdebench": "hdf5",
         "init_multi": "initial", "ProtocolData": "protocol", "ProtocolError": "protocol", "load_protocol": "protocol",
         "SolverError": "solver", "solve_burgers": "solver"}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'ups.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"ups.data.{_HOME[name]}"), name)
    globals()[name] = value
    return value

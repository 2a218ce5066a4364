"""Burgers data: PDEBench initial conditions, ETDRK4 solver, PDEBench-layout HDF5, cache, protocol.

Ray-free. Public entry points: ``load_protocol``, ``dataset_path``, ``solve_burgers``, ``init_multi``,
``read_pdebench`` / ``write_pdebench``.
"""
from ups.data.cache import DataConfigError, dataset_path
from ups.data.hdf5 import BurgersFile, DataFileError, read_pdebench, write_pdebench
from ups.data.initial import init_multi
from ups.data.protocol import ProtocolData, ProtocolError, load_protocol
from ups.data.solver import SolverError, solve_burgers

__all__ = [
    "BurgersFile", "DataConfigError", "DataFileError", "ProtocolData", "ProtocolError", "SolverError",
    "dataset_path", "init_multi", "load_protocol", "read_pdebench", "solve_burgers", "write_pdebench",
]

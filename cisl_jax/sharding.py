"""Data parallelism over every device of every host, with `jax.jit` and `NamedSharding`.

One 1-D mesh with the axis 'data' spans all devices (`jax.devices()`, every host after
`jax.distributed.initialize`). Batches are sharded along their first axis over 'data';
parameters, BatchNorm statistics and optimizer state are replicated. The jitted steps
are the same functions on 1 CPU, 1 GPU or many devices: XLA inserts the gradient
all-reduce from the shardings, so there is no pmap and no per-device code.

Multi-host: every process runs the same command; `initialize_distributed` reads the
coordinator from its arguments or from the environment (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID), and each process feeds only its own slice of the
global batch (`shard_batch`).
"""
import os
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Starts multi-host JAX when a coordinator is given (argument or environment).

  Returns True when `jax.distributed.initialize` was called. With neither an argument
  nor JAX_COORDINATOR_ADDRESS set this does nothing, so single-host runs need no flags.
  """
  address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not address:
    return False
  num = num_processes if num_processes is not None else os.environ.get('JAX_NUM_PROCESSES')
  pid = process_id if process_id is not None else os.environ.get('JAX_PROCESS_ID')
  if num is None or pid is None:
    raise ValueError(
        f'multi-host run with coordinator {address!r} needs the number of processes and '
        'this process id: pass --num_processes and --process_id, or set '
        'JAX_NUM_PROCESSES and JAX_PROCESS_ID.')
  jax.distributed.initialize(coordinator_address=address, num_processes=int(num),
                             process_id=int(pid))
  logging.info('jax.distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def make_mesh(devices: Any = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all hosts) with axis 'data'."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices).reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises a clear error when the global batch does not split evenly over devices."""
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(
        f'config.batch_size={batch_size} does not divide over {n} devices; set '
        f'--config.batch_size to a multiple of {n}.')


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of `tree` on every device of the mesh.

  `tree` must hold the same values on every process (seeded init, or a restored
  checkpoint). With several processes `device_put` refuses a sharding over devices it
  cannot address, so each process builds the global array from its own copy.
  """
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = put(jax.random.key_data(x))  # RNG streams: place the raw key bits
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, tree)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Turns a host batch into global arrays sharded along axis 0 over 'data'.

  `batch` holds the GLOBAL batch on every process (the samplers are seeded
  identically everywhere); each process contributes only the rows that belong to
  its own devices, so nothing is sent between hosts.
  """
  sharding = batch_sharded(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  out = {}
  for name, value in batch.items():
    value = np.asarray(value)
    rows = value.shape[0] // jax.process_count()
    start = jax.process_index() * rows
    out[name] = jax.make_array_from_process_local_data(
        sharding, value[start:start + rows], value.shape)
  return out


def to_host(tree: Any) -> Any:
  """Fetches (possibly multi-host, replicated) arrays to numpy on this process."""
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:  # metrics, parameters: every process holds the value
        return np.asarray(x.addressable_data(0))
      x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)
  return jax.tree.map(fetch, tree)

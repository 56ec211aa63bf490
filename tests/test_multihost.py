"""Multi-host data parallelism for real: 2 processes on this machine against 1.

Two processes join `jax.distributed` on a 127.0.0.1 coordinator (CPU collectives over
gloo), each feeding half of every global batch; a third runs the same steps alone.
Classifier (2 SGD steps) and CVAE-GAN (2 iterations) must agree within rounding.
Every process is killed if the group has not finished within TIMEOUT_S.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np

WORKER = pathlib.Path(__file__).resolve().parent / 'multihost_worker.py'
REPO = WORKER.parent.parent
TIMEOUT_S = 600  # for the whole group


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_group(runs: list[list[str]]) -> list[dict]:
  """Starts every worker at once, waits for all (killing all on timeout), parses RESULT."""
  env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
  for k in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    env.pop(k, None)
  # One CPU device per process, whatever the caller forced; other flags (the suite's
  # fast compile) pass through.
  env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                              if 'xla_force_host_platform_device_count' not in f)
  procs = [subprocess.Popen([sys.executable, str(WORKER), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in runs]
  deadline = time.monotonic() + TIMEOUT_S
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  results = []
  for p, (stdout, stderr) in zip(procs, outs):
    assert p.returncode == 0, stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith('RESULT')][-1]
    results.append(json.loads(line[len('RESULT'):]))
  return results


def test_two_processes_match_one():
  port = free_port()
  first, second, alone = run_group([[str(port), '2', '0'], [str(port), '2', '1'],
                                    ['0', '1', '0']])
  assert first['process_count'] == second['process_count'] == 2
  assert first['devices'] == 2 and alone['devices'] == 1
  assert first['classifier']['batch_devices'] == 2
  for run in (first, second):
    np.testing.assert_allclose(run['classifier']['losses'], alone['classifier']['losses'],
                               rtol=1e-5)
    for kind in ('params', 'batch_stats'):
      for a, b in zip(run['classifier'][kind], alone['classifier'][kind]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The GAN's losses after its second step, looser: its sharded BatchNorm statistics and
    # D's gradient sums are all-reduced across the processes in another order, so step 1's
    # E+G gradient differs by ~2e-5 relative (its norm, quick config with DiffAugment
    # 'color'), and the second step's losses by up to ~2e-4 after Adam's first update.
    np.testing.assert_allclose(run['gan']['losses'][0], alone['gan']['losses'][0], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(run['gan']['losses'], alone['gan']['losses'], rtol=1e-3,
                               atol=1e-5)
    for a, b in zip(run['gan']['class_means'], alone['gan']['class_means']):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

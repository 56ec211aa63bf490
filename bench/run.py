"""Runs our benchmarks and both peers one after another and prints ratios ours / peer.

  python bench/run.py                      # batch 64 and the paper configs' batch
  python bench/run.py --models classifier --rounds 3 --steps 20
Each (model, batch) is measured `rounds` times as ours, Keras, PyTorch in turn, so
that the three see the same machine load; the ratio per round and the median over
rounds are printed. `uptime` is printed before and after: the machine may be shared.
The roofline (bench/roofline.py): the machine's f32 and bf16 matmul peak is measured
once; each train step's line gets `gflops` (img/s x the step's GFLOP per image, from
XLA's cost analysis of the straightforward step, the same work for every framework)
and `share_of_peak` (of the f32 peak); `--no_roofline` skips both.
Keras runs with this interpreter (tensorflow-cpu is a project dependency); PyTorch runs
with --torch_python (a separate venv, never the project's install) and is skipped with
a note when that interpreter is missing.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
OURS = {'classifier': 'bench_classifier.py', 'cvaegan': 'bench_cvaegan.py'}
DEFAULT_STEPS = {'classifier': 20, 'cvaegan': 10, 'generate': 20}


def run_json(cmd: list[str], env=None) -> dict | None:
  """Runs cmd, returns its last JSON line (None, with the error shown, on failure)."""
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  for line in reversed(proc.stdout.strip().splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  sys.stderr.write(f'FAILED ({proc.returncode}): {" ".join(cmd)}\n{proc.stderr[-2000:]}\n')
  return None


def uptime() -> str:
  try:
    return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  except OSError:
    return 'uptime unavailable'


def paper_batch() -> int:
  sys.path.insert(0, str(HERE))
  import common  # pylint: disable=g-import-not-at-top
  return int(common.load_config('train_classifier', 'paper').batch_size)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--models', default='classifier,cvaegan,generate,input_pipeline')
  p.add_argument('--batches', default='', help='comma-separated; default 64 and the paper batch')
  p.add_argument('--steps', type=int, default=0, help='timed steps (default per model)')
  p.add_argument('--rounds', type=int, default=1)
  p.add_argument('--peers_dir', default=str(REPO.parent / 'shared' / 'peers'))
  p.add_argument('--keras_python', default=sys.executable)
  p.add_argument('--torch_python', default=str(REPO / '.venv-peers' / 'bin' / 'python'),
                 help='a venv with torch (make bench builds .venv-peers)')
  p.add_argument('--no_roofline', action='store_true', help='skip peak and FLOP counts')
  a = p.parse_args()
  batches = ([int(b) for b in a.batches.split(',')] if a.batches
             else sorted({64, paper_batch()}))
  peers = pathlib.Path(a.peers_dir)
  if not (peers / 'peer_keras.py').exists():
    sys.exit(f'{peers}: no peer_keras.py there; pass --peers_dir (make bench PEERS_DIR=...) '
             'pointing at the shared peers folder.')
  have_torch = os.path.exists(a.torch_python)
  if not have_torch:
    print(f'# PyTorch peer skipped: {a.torch_python} not found (make a separate venv: '
          'make bench builds .venv-peers with torch)')
  print(f'# load before: {uptime()}', flush=True)
  summary = []
  steps_wanted = [m for m in a.models.split(',') if m in OURS]
  peak = None
  if steps_wanted and not a.no_roofline:
    peak = run_json([sys.executable, str(HERE / 'roofline.py'), 'peak'])
    if peak:
      print(json.dumps(peak), flush=True)
  for model in a.models.split(','):
    steps = a.steps or DEFAULT_STEPS.get(model, 10)
    for batch in batches:
      if model == 'generate':
        line = run_json([sys.executable, str(HERE / 'bench_generate.py'), '--batch',
                         str(batch), '--steps', str(steps)])
        if line:
          print(json.dumps(line), flush=True)
        continue
      if model == 'input_pipeline':
        script = HERE / 'bench_input_pipeline.py'
        if script.exists():
          proc = subprocess.run([sys.executable, str(script), '--batch', str(batch)],
                                capture_output=True, text=True, check=False)
          print(proc.stdout.strip() or proc.stderr[-1000:])
        continue
      ratios = {'keras': [], 'torch': []}
      shares = {'jax': [], 'keras': [], 'torch': []}
      work = None
      if peak:
        work = run_json([sys.executable, str(HERE / 'roofline.py'), 'flops', '--model', model,
                         '--batch', str(batch)])
        if work:
          print(json.dumps(work), flush=True)
      for _ in range(a.rounds):
        args = ['--batch', str(batch), '--steps', str(steps)]
        ours = run_json([sys.executable, str(HERE / OURS[model])] + args)
        keras = run_json([a.keras_python, str(peers / 'peer_keras.py'), '--model', model] + args)
        torch = (run_json([a.torch_python, str(peers / 'peer_torch.py'), '--model', model]
                          + args) if have_torch else None)
        for line in (ours, keras, torch):
          if line:
            if work:
              line['gflops'] = round(line['img_per_s'] * work['gflop_per_img'], 1)
              line['share_of_peak'] = round(line['gflops'] / peak['f32_gflops'], 3)
              shares.setdefault(line['impl'], []).append(line['gflops'])
            print(json.dumps(line), flush=True)
        for name, peer in (('keras', keras), ('torch', torch)):
          if ours and peer:
            ratios[name].append(ours['img_per_s'] / peer['img_per_s'])
      for name, values in ratios.items():
        if values:
          line = {'ratio': f'jax/{name}', 'model': model, 'batch': batch,
                  'median': round(statistics.median(values), 3),
                  'rounds': [round(v, 3) for v in values]}
          summary.append(line)
      if work and any(shares.values()):
        gflops = {k: statistics.median(v) for k, v in shares.items() if v}
        summary.append({'roofline': model, 'batch': batch,
                        'gflop_per_img': work['gflop_per_img'],
                        'peak_f32_gflops': peak['f32_gflops'],
                        'peak_bf16_gflops': peak['bf16_gflops'],
                        'gflops': {k: round(v, 1) for k, v in gflops.items()},
                        'share_of_peak': {k: round(v / peak['f32_gflops'], 3)
                                          for k, v in gflops.items()}})
  print(f'# load after: {uptime()}')
  for line in summary:
    print(json.dumps(line))


if __name__ == '__main__':
  main()

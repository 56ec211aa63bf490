"""ml_collections configs, one module per stage; `get_config('quick' | 'paper')`."""

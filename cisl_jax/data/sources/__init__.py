"""Sources of boxed slices: phantom (the default), manifest, lidc, liss.

Every source returns a list of `cisl_jax.data.records.BoxedSlice`; everything after
that (patches, folds, the TFDS dataset) is shared.
"""

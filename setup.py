"""cisl_jax: lung CT imaging sign classification on small data, in JAX.

Exact pins: a research result must be reproducible from the same wheels. The pins
were resolved together by pip on CPython 3.11 (2026-11-25); see BUILD_NOTES.md.
"""
import setuptools

INSTALL_REQUIRES = [
    'absl-py==2.5.1',
    'array_record==0.8.6',
    'flax==0.12.8',
    'highdicom==0.28.2',  # predict's DICOM Segmentations (pulls pyjpegls)
    'jax==0.10.2',
    'jaxlib==0.10.2',
    'matplotlib==3.11.2',
    'ml_collections==1.1.0',
    'numpy==2.4.6',
    'optax==0.2.8',
    'orbax-checkpoint==0.12.8',
    'pillow==13.0.0',
    'pydicom==3.0.2',
    'pyjpegls==1.5.1',  # highdicom's JPEG-LS codec, pinned with it
    # pydicom's pixel-data plugins for compressed DICOM (clinical exports): JPEG and
    # JPEG-LS through libjpeg, JPEG 2000 through openjpeg. RLE is pydicom's own.
    'pylibjpeg==2.1.0',
    'pylibjpeg-libjpeg==2.5.0',
    'pylibjpeg-openjpeg==2.6.0',
    'scipy==1.17.1',
    'tensorboard==2.21.0',
    'tensorflow-cpu==2.21.0',
    'tensorflow-datasets==4.9.10',
]

TESTS_REQUIRE = [
    'playwright==1.65.2',  # drives Debian's /usr/bin/chromium; never downloads a browser
    'pyjpegls==1.5.1',  # JPEG-LS encoder: the tests write compressed slices themselves
    'pytest==9.2.0',
    'pytest-xdist==3.8.0',
]

setuptools.setup(
    name='cisl_jax',
    version='0.1.0',
    description=('Lung CT imaging sign classification through deep learning on '
                 'small data: CVAE-GAN pre-training in JAX/Flax.'),
    packages=setuptools.find_packages(include=['cisl_jax', 'cisl_jax.*']),
    package_data={'cisl_jax': ['turing_page.html']},  # the Turing-test page template
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        'test': TESTS_REQUIRE,
        # Optional: the torchvision-layout equivalence tests and --source=torch weight
        # conversion. The CPU build of this version is what the project was tested with.
        'torch': ['torch==2.13.0'],
        # NVIDIA GPUs: the CUDA 12 plugin of the same jaxlib release.
        'gpu': ['jax[cuda12]==0.10.2'],
    },
)

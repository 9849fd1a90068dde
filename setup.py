"""pip-adapter: Prompt-In-Prompt modules for U-shaped restoration networks, as a BasicSR plugin."""
from setuptools import find_packages, setup

setup(
    name="pip-adapter",
    version="0.1.0",
    description="Prompt-In-Prompt (PIP) universal image restoration for any U-shaped network, on BasicSR",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["pip_adapter", "pip_adapter.*"]),
    # the shipped models (pip-adapter models): index + weights, checked against a 10 MB budget by the tests
    package_data={"pip_adapter.zoo": ["models/index.json", "models/*.safetensors"]},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "basicsr==1.4.2",
        "timm",
        "opencv-python",
        "lmdb",
        "pyyaml",
        "scikit-image",
        "scipy",
        "numpy",
        "tqdm",
        "safetensors",
        "Pillow",
    ],
    extras_require={
        # the test suite also draws inspect's figures, drives the demo page in a browser and checks ONNX export,
        # so dev includes the viz, demo and onnx packages and selenium (the browser: Debian's chromium + chromium-driver),
        # and the model card's test runs CBM3D (bench); pytest-xdist runs the suite on two worker processes
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "matplotlib", "scikit-learn", "gradio>=6,<7", "selenium>=4",
                "onnx", "onnxscript", "onnxruntime", "bm3d"],
        "viz": ["matplotlib", "scikit-learn"],
        "demo": ["gradio>=6,<7"],
        # pip-adapter export --format onnx, and restore -m model.onnx (onnxruntime)
        "onnx": ["onnx", "onnxscript", "onnxruntime"],
        # bench/model_card.py: CBM3D, the classical anchor of the model card's colour denoising table
        "bench": ["bm3d"],
    },
    entry_points={
        "console_scripts": [
            "pip-adapter=pip_adapter.cli:main",
            "basicsr=pip_adapter.cli.basicsr_cmd:main",
        ],
    },
)

"""Packaging for enfoads: GPU-memory-aware generative model services and web app."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "enfoads" / "_version.py").read_text(), version)

setup(
    name="enfoads",
    version=version["__version__"],
    description=(
        "Run open-source generative models (SDXL-Lightning, InsightFace, "
        "faster-whisper, TTS) on a free or cheap GPU and use them from a web app."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["enfoads", "enfoads.*"]),
    include_package_data=True,
    package_data={"enfoads": ["data/*"]},
    install_requires=[
        # A range, so Colab's preinstalled CUDA build of torch is kept there.
        "torch>=2.1",
        "diffusers>=0.30",
        "transformers>=4.44",
        "accelerate>=0.33",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "faster-whisper>=1.0",
        "insightface>=0.7.3",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "opencv-python-headless>=4.8",
        "flask>=3.0",
        "flask-socketio>=5.3",
        # WebSockets for Flask-SocketIO's threading mode (real OS threads).
        "simple-websocket>=1.0",
        "flask-cors>=4.0",
        "flask-limiter>=3.5",
        "pyngrok>=7.0",
        "pydantic>=2.5",
        "pydantic-settings>=2.7",
        "pillow>=10.0",
        "numpy>=1.24",
        "tqdm>=4.66",
        # Offline TTS (GPL-3.0-or-later, imported in-process) and an ffmpeg
        # binary with libx264 and AAC, so no system ffmpeg is needed.
        "piper-tts>=1.8",
        "imageio-ffmpeg>=0.5",
        # NVML bindings: /gpu-status reports the GPU's real utilisation.
        "nvidia-ml-py>=12",
    ],
    extras_require={
        # onnxruntime-gpu shares the `onnxruntime/` folder with onnxruntime:
        # install it LAST (see README, "GPU install"). 1.24 is the last PyPI
        # line built for CUDA 12 + cuDNN 9, which Colab runs.
        "gpu": ["onnxruntime-gpu>=1.24,<1.25"],
        "colab": ["pyngrok>=7.0", "nbclient>=0.10", "ipykernel>=6.29", "ipywidgets>=8"],
        # edge-tts needs the internet (fine on Colab); off when unreachable.
        "online": ["edge-tts>=7"],
        "test": [
            "pytest>=8.0",
            "nbclient>=0.10",
            "ipykernel>=6.29",
            "requests>=2.31",
            "openai>=1.30",
            "python-socketio[client]>=5.10",
            "websocket-client>=1.7",
            "ipywidgets>=8",
            "jsonschema>=4",
            "schemathesis>=4.0",
        ],
    },
    entry_points={"console_scripts": ["enfoads=enfoads.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)

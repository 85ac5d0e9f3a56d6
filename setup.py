"""pip install of the ROS-free core library (ROS 2 users build with colcon instead; see README)."""
from setuptools import find_packages, setup

setup(
    name="textregion_ros",
    version="0.1.0",
    description="TextRegion open-vocabulary region tokens (SAM2 + CLIP/SigLIP2/PE), with a ROS 2 node",
    license="MIT",
    packages=find_packages(include=["textregion_ros", "textregion_ros.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Ranges, as in requirements.txt: pins live in requirements-dev.txt (our environment) only.
        "torch>=2.5", "torchvision>=0.20", "open_clip_torch>=3.0,<4", "timm>=1.0.15", "sam2>=1.1,<2",
        "numpy", "opencv-python-headless", "scikit-image>=0.21", "scipy>=1.8", "threadpoolctl>=3.1",
        "PyYAML>=5.4",
        "huggingface_hub>=0.30", "Pillow>=9.0", "safetensors>=0.4", "tqdm>=4.60", "matplotlib>=3.5",
        "onnx>=1.16", "onnxruntime>=1.18",
    ],
    # One onnxruntime package at a time: the GPU build (CUDA, TensorRT) or the OpenVINO build replaces it.
    extras_require={"test": ["pytest"], "fp16": ["onnxconverter-common>=1.14"]},
    entry_points={"console_scripts": ["textregion-eval=textregion_ros.eval.cli:main",
                                      "textregion-export=textregion_ros.backends.export:main"]},
)

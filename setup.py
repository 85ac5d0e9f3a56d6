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
        "torch>=2.5", "torchvision>=0.20", "open_clip_torch==3.3.0", "timm==1.0.31", "sam2==1.1.0",
        "numpy", "opencv-python-headless", "scikit-image", "PyYAML",
    ],
    extras_require={"test": ["pytest"]},
)

"""textregion_ros: open-vocabulary region perception (TextRegion) with a ROS 2 adapter.

The core (pipeline, encoders, masks, pooling) imports no ROS; textregion_ros.ros
holds the node. The generated messages live in textregion_ros.msg / .srv.
"""
# The colcon build installs the generated msg/ and srv/ into its own copy of this
# package. Extending __path__ lets a pip-installed or source copy that comes first
# on sys.path still find them.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"

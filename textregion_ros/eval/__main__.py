"""python -m textregion_ros.eval ..."""
import sys

from .cli import main

sys.exit(main())

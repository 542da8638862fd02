import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__ and "editable" not in repr(f)]
sys.path.insert(0, "/tmp/rs/base")
from interfaces.cli import main
sys.exit(main())

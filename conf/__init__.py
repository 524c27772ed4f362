"""vanseg's Hydra configuration tree, installed as the package ``vanseg.conf``.

The YAML files live here, at the top of the repository; the build maps this folder into the
package (``setup.py``), so an installed vanseg finds them through ``pkg://vanseg.conf``. Hydra
only searches a ``pkg://`` folder that has an ``__init__.py``, hence this file.
"""

"""Packaging: what pyproject.toml cannot say. Metadata, dependencies (``requirements.txt``) and
the ``explorer`` console script are in pyproject.toml.

The wheel holds the ``explorer`` package (found by setuptools' package discovery, so new
subpackages come along) and a copy of the Streamlit app: the checkout's top-level ``app.py`` and
``pages/`` mapped to ``explorer/streamlit_app/`` (``explorer app`` runs it where there is no
checkout), with the app's ``.streamlit/config.toml``. Nothing else of the checkout (tests,
bench, docs, this file) is shipped.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

APP = "explorer.streamlit_app"


class BuildPy(build_py):
    """build_py that takes only ``app.py`` from the top level mapped to :data:`APP` (not setup.py)."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if package != APP or m[1] == "app"]


setup(
    packages=find_packages(include=["explorer*"]) + [APP, f"{APP}.pages"],
    package_dir={APP: ".", f"{APP}.pages": "pages"},
    # Streamlit reads the .streamlit/config.toml beside the script it runs
    package_data={APP: [".streamlit/config.toml"]},
    include_package_data=False,
    cmdclass={"build_py": BuildPy},
)

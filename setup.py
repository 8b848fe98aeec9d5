"""The folders at the top of the repository install under one import namespace.

``node/``, ``peer/``, ``storage/`` and ``configs/`` stay where they are in the
repository, but install as ``pacsnode.node``, ``pacsnode.peer``, ... so nothing
named ``node`` or ``storage`` lands at the top of site-packages. The metadata
lives in ``pyproject.toml``; only this mapping needs code (the subpackages are
found, not listed by hand).
"""

from setuptools import find_packages, setup

FOLDERS = ("node", "peer", "storage", "configs")

setup(
    package_dir={f"pacsnode.{folder}": folder for folder in FOLDERS},
    packages=[
        f"pacsnode.{package}"
        for package in find_packages(include=[f"{folder}*" for folder in FOLDERS])
    ],
    package_data={
        "pacsnode.configs": ["*.toml", "examples/*.toml"],
        # the web UI's templates and assets, served from inside the package
        "pacsnode.node.ui": ["templates/*.html", "static/*"],
    },
)

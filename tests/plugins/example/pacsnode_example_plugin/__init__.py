"""Example pacsnode plugins, one per kind (see ``docs/plugins.md``).

- ``web.py``: the ``example`` web plugin, ``/plugins/example/modalities`` (studies per
  modality, as JSON) and a page with a panel in the UI's navigation;
- ``storage.py``: the ``example-dir`` storage backend, sealed study ZIPs in a folder of
  their own;
- ``index.py``: the ``example-bodypart`` index plugin, queries on Body Part Examined
  answered from memory, fed from the change feed;
- ``broken.py``: a module that does not import, for the tests of start-up failures.
"""

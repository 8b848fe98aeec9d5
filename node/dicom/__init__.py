"""DICOM network services (pynetdicom): C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET."""

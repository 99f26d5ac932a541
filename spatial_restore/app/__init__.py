"""A local web page (Gradio) and API for restoring photos: ``python -m spatial_restore.app``.

``restore`` (no server) checks and restores one file, ``ui`` builds the page and the ``/restore``
endpoint over it, ``engine`` is the app's only link to the library. Importing this package loads no
model and starts nothing.
"""

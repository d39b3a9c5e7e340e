"""Uploads: files kept in memory and named by id (``/v1/files``), and the safe decoding of
the images among them."""

"""Reading matrices and writing results.

:mod:`~bncli.io.read` reads files, stdin and .npy arrays, through the careful reader
(:mod:`~bncli.io.careful`, which decides and words every error) or, for large text where the two
agree, the fast one (:mod:`~bncli.io.fast`); :mod:`~bncli.io.write` writes csv, tsv and json;
:mod:`~bncli.io.files` writes output files together, each atomically. Modules of this package
import the standard library's ``io`` under another name, so the two cannot be confused.
"""

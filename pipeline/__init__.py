"""Continuous code-images dataset: Zenodo software records turned into 80x80 code images.

The package is laid out in the order data flows (STYLE guideline 1):

    manifest -> zenodo (client) -> records (shapes) -> detect -> fetch -> extract -> convert
    -> store -> process -> version -> publish/{zenodo,kaggle} -> notify/{feed,webhook,slack,
    dispatch,actions} ; state ; cli ; sandbox/ (the embedded offline services) ; loader (users' API)
"""

__version__ = "0.1.0"

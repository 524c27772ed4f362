"""The model file formats: a checkpoint (`vanseg.checkpoint.file`), an export folder
(`vanseg.checkpoint.hub`) and what both say about the model (`vanseg.checkpoint.metadata`)."""

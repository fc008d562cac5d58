"""fastai training on PatchCamelyon and on patches mined from annotated slides."""

"""The Neural Style plug-in's parts, cut at their seams. They run inside GIMP's Python
only (the standard library and gi), beside the plug-in file, under the names that
impasto.gimp.PARTS gives them; they import one another by those names."""

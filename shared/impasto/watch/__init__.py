"""Watch folders: images dropped into DIR/in/ come out stylized in DIR/out/."""

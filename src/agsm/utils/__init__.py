"""What every room shares and no user imports: atomic files, device and dtype choice, progress lines."""

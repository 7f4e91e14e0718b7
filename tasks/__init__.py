"""Task plugins (synthetic, text classification, DocRED, image classification) and metrics."""

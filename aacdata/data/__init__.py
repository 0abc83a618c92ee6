"""The torch side: window plans, labels, epoch sharing and the dataset."""

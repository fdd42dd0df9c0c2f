"""segtune core library: data, models, losses, metrics and training for PASCAL VOC segmentation."""

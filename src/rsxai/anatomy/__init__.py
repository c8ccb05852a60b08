"""Where things are: offline atlases (Harvard-Oxford, AAL) and cluster / region tables."""

from rsxai.anatomy.atlas import atlas_data_dir, label_coordinates, load_atlas
from rsxai.anatomy.clusters import cluster_table, top_regions

__all__ = ["atlas_data_dir", "cluster_table", "label_coordinates", "load_atlas", "top_regions"]

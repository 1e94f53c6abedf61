"""What themoviedb.org says: poster URLs on a page, the genres it lists, images and renditions."""

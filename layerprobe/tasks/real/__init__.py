"""Real downstream tasks read from the user's data root (registered on import).

Naming: ``<name>`` uses the full splits; ``vtab1k/<name>`` (the 19 VTAB-1k tasks) uses
``train`` = VTAB's train800 (800 of the full train split), ``val`` = val200 (200 of the full val
split) and ``test`` = the full test split. Every split is fixed: percentage cuts and the 800/200
subsets come from one permutation with seed 0 (see ``_common.py``).

=====================  ===========  =======  ===============================================
task                   group        classes  full splits (train / val / test)
=====================  ===========  =======  ===============================================
cifar10                natural      10       90% / 10% of train, test
cifar100 *             natural      100      90% / 10% of train, test
caltech101 *           natural      102      30 per class -> 90% / 10%; rest = test
dtd *                  natural      47       official train1 / val1 / test1
flowers102 *           natural      102      official train / val / test
pets *                 natural      37       80% / 20% of trainval, test
svhn *                 natural      10       90% / 10% of train, test
sun397 *               natural      397      70% / 10% / 20% of all (TFDS lists)
imagenet               natural      1000     96% / 4% of train, official val
cars                   natural      196      80% / 20% of train, test
birds                  natural      200      90% / 10% of train, test
pcam *                 specialized  2        official train / valid / test
eurosat *              specialized  10       60% / 20% / 20%
resisc45 *             specialized  45       60% / 20% / 20%
retinopathy *          specialized  5        train, test Public, test Private
col_hist               specialized  8        1600 / 400 / 3000
uc_merced              specialized  21       800 / 200 / 1100
clevr_count *          structured   8        90% / 10% of train, official val
clevr_distance *       structured   6        90% / 10% of train, official val
dmlab *                structured   6        TFDS train / validation / test (TFRecords)
kitti_distance *       structured   4        TFDS's by-drive split (or 80/10/10)
dsprites_location *    structured   16       80% / 10% / 10%
dsprites_orientation * structured   16       80% / 10% / 10%
smallnorb_azimuth *    structured   18       train, test halves
smallnorb_elevation *  structured   9        train, test halves
=====================  ===========  =======  ===============================================

(* also registered as ``vtab1k/<name>``.) Each module's docstring gives the on-disk layout it
reads, where the data is published, and how close its splits come to TFDS's: exact for the
official splits, Caltech-101's 30-per-class draw follows TFDS's seeded draw, exact for KITTI when the devkit mapping files are
there and for SUN397 when TFDS's split lists are copied next to it; elsewhere TFDS's shuffled
order is replaced by one fixed permutation. ``vtab1k/<name>`` reads the VTAB-1k file-list release
(``DIR/vtab-1k/<folder>/{train800,val200,test}.txt``) when it is present.

``layerprobe tasks`` finds a task by checking that its expected paths exist and sizes it from
labels only (never decoding an image); ``benchmarks/tasks_listing.py`` measures that.
"""

from layerprobe.tasks.real import (  # noqa: F401  (importing registers the tasks)
    birds,
    caltech101,
    cars,
    cifar,
    clevr,
    col_hist,
    dmlab,
    dsprites,
    dtd,
    eurosat,
    flowers102,
    imagenet,
    kitti,
    pcam,
    pets,
    resisc45,
    retinopathy,
    smallnorb,
    sun397,
    svhn,
    uc_merced,
)

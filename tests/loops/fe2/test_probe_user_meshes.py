"""A user's own meshes in FE²: Gmsh .msh 2.2 and 4.1 (ASCII, binary), VTU and XDMF, physical
groups, second-order cells, and broken files, checked against exact answers (patch test,
the Neo-Hookean bar in closed form, the built-in mesh, equilibrium of the reactions)."""

from __future__ import annotations

import base64
import math
import zlib
from pathlib import Path

import meshio
import numpy as np
import pytest
import skfem
from scipy.optimize import brentq

from loops.cli import main as scalebridge
from loops.fe2.config import ConfigError, load_config
from loops.fe2.mesh import default_element, load_mesh, plate_with_hole, rectangle
from loops.fe2.providers import NeoHookean
from loops.fe2.solver import DirichletBC, MacroSolver

E, NU = 10.0, 0.3
LAW = NeoHookean.from_young(E, NU)
H2 = np.array([[0.03, 0.01], [-0.02, 0.02]])
H3 = np.array([[0.03, 0.01, -0.01], [-0.02, 0.02, 0.005], [0.01, 0.0, -0.015]])

#: small meshes written by Gmsh 4.15.2 (OpenCASCADE geometry, physical groups), zlib + base64
GMSH = {
    "mixed_v4.1b.msh": (
        "eNqNVUtPE1EUnkfbgWlLW1pfiDhMunBFAIkxLBhc4GMBYeMPqDBKI+1oOxtdYUzUP+BGdiYsXLFzZVwb3LkAN0YWmOgKQ3zy"
        "GufO3IE739yLTNKcuXfO+c53nq1O2u25q06rUXP1kYEhY8i4rMuSJOnVieYs8606PfegXZ+pzU/VGnZbv6QPGsODhjnjtJp2"
        "y9SJoTlv33bJ67Bhtup35oL3i4Z5y3Fdp0EOI4bpOvdMfdgY8m1nnUat3jQDT3F0/8atu3X/LSOFj0alIsUfWRI/0bdKzO67"
        "JdJXEzpJ3VTCKqmTPnwdF/nKJHSSOCH/hRdbaw/fXl9+E5OLW2s9xIaexyIpM7EoDM6+53nkvNIzveJ5m8TXYoi3G8M7xA3u"
        "xyTIO5F7PpbKcHtPMZEbcpSZHCoMz10fj9xF9oKYx0R4MoNHcHw4j9QAeUVy8u/dPMn7cXJH5I6PR+pl5y988V8t5Bfhifgp"
        "DB7hte2DaAw/5Pk/PDZ/GVoP+m0xzN/xahvh6UxfR7lUGT+inknyFOOmKVeN9mIw9AdTXp1yZn1RYAYWBxiHWj7GAsDmlblL"
        "hL8QVLBRuTZx2xTYpLhs4jZpsEnHlcePWh5ycplwF4rMyZcWi2udu3wwbx0QB9rKnLx1Ukma3vM+WzxumDcduMRtQz3MWzZW"
        "2z/ceDBvOcgbLx4NbPJU7gecfifiUTg900Vl1N9FKveebL3q1datb9eWjJtMfL9eD9yfWFq1Xo4sPV1d3ji4H3105XHfuw3L"
        "ujH66fnyasynAj1XorKbyjLMUkDf27FCu6+Qr216/zF+v/CDnj/E75/9tAK4zUOuwYCHY12dmLcbdtNt61Ez9ENS+6FQhSMG"
        "XWZ+imDANSiAxtFTOf8crE0nDGQnZ8hTgJEBHR3865xY0oDRAVyz4D/LWRwZwNBBJwe2Oc4i0QADdfICqULjq4xNF/ApCHJZ"
        "gNiLgroVBYNVBPsS5BkHUIfhwJoXwK4s6K8i6CnMrwsGLgc+o9qcgHM31OokxFYBzqfgXIH6nIYclgHvDPgrg34P4JWgL87C"
        "uQTx9sJ9BeI8B/gV0O8TLLQI/zzcVyAOQ7AAO2D34KLMsovsYIP9AxqEr3o="
    ),
    "plate6_v4.1b.msh": (
        "eNqVmAlUVEcWhrubBrEVEASVxdg2myCiCC0CkUIENwgBFVdUtjY4ojjARMUoOoxrNIkaRsXR6DHjECPimZhgDBLNjAFFHRcM"
        "Lu0KKJvBqIk7PXRzX7/mfzwzU+dwvn4/Vbeqbt2qV/e5vaPJShudkTk/KVsR4Oun9FMOV0glEonCLXJBqsn/3GLTlmTNTUlK"
        "j0mar8lSDFPoq6rSNXOyVW0/hypVmXPfSzP89leqkjOyszPm6x8ClKrsjIX6X2qlKi0jXaNSDFX6DVGqFqYnZbc96HvpaLlN"
        "yZ6bPbftl7mkvXCUSjoW/bO/oVxiEpEia/srkofeHfvlidIAkbpmglYPBXXkgv8J65i/ob2kwxx2FzyqzimTSI4bOLa41MBd"
        "rzfv0o+PI+mhUhP7MhM7rTqdTv/MtT+Vdql8KN+Osxu641G1k35MaE9qYs+M7LX7YoWhfaVT7GmdrsVoj7MjZk9uYk//+3Wb"
        "PT05O5zd/9WezMSefu6v2uzpWdH5PMvQDtozA/+9bLMnNZnv/zs+hcma62hscpN+DMFtjGa3mIzUNnSjBhoIao0gSIR8U7DL"
        "oC73/KbgN4M2Zp2GbMdglkMbead1O7bBDWz+O5tN2smYLIhdiJbELfa6HDfPSraByNl4uibuA6tjF1hopbxCm3LMqI+l59/o"
        "/5JONgM3vq4mC60v3Np1J1rBuNes1Zd6wXx62OrLHYE+KkJfmgX6GUOpFej7DeVahzGbgV+siTZc30Rboh2xJ9G+wzrWC9av"
        "3f5tgd5e/7xAb/dhs0j9WhH9ioh+XKBLTWKOm7MDsRexN7EP0ZHoRHSG+PtZv3t1/2EY9y8M+i2B3mrQ7wv0Bwb9e4H+3KBX"
        "i9ipEegGWdfUYc74MnQh9iW+RexHVHLrLBJ760RitQhijCvnRGIyUiSGZSZ7OJLYn6giuhLdiO5ED6IncQDRi+hNHEj0IQ4i"
        "+hIHE4cQ/YhDufOUGEBUE4cRA4nDiUHEYGII8W3iCGIokXNKGHEkMZzb/8QI8NNo4hjuzCKOI44nRhGjie8QY4jvEmOJccQJ"
        "xInEScR44mTiFOJU4jTidOIMYgJxJnEWcTYxkZhETCamEFPhHbiyMHha9ZErbE/yVNvUFj5GE2TPvfbWNLCpWz7SZa79yah/"
        "4x9lX9lSw3b+KUihHtlg1BXf2jSccrjNqpwTV2cduWvUh5+YmJsWc4HJfrq27WYIr4+Tjgxyj6lm25wD8xzzrhj1Hy2kYQf3"
        "1LO1ATtLljF+vyqf/Xnvnce1THug/9OTH5TzZ+YSzcrzP15nhQk36hof8nrDxL8/23L1Lntv7/r73bJ4+4/ioreO9z/Jbg0t"
        "fx639apRj9lW0l0yoIIpTqjmbP+ZP29YY+5iqXMjCyUaz4n7kpvqnk0s2nvf1niXfxv1WIOdI2xVou1X0U/5c8XnzAwLif0Z"
        "gc7Vr/g8/uknIbz/c1Zfe3hw0R22dr57zvNfbhr1qYMmuuw5VsdCVid/abaEPy/rZ6+1L51Ry3wLW3c9e8n7WTXw3U07Zt1j"
        "iTs2ZH2/jD8XN8tfHy4Mb2ABy1MDS/J4+6F9PfaXjr3H7OKbEqeF3TPqie8XLT8tu8uOVESPrXpVx+sbi1elJZ9lqyuX60Ic"
        "6gTzsmrYHnI5txbi4QRb9/jXqkX7+LNS7mF/7ui9GtZYuvGPJX0uGnW15QGX5bNusxuFbxcdV/N63DWnR5/Pu8N++Evugivf"
        "8OuuDRjT/JnZZTbhb47xe/L58ezb/u2A1tIrrGnxThuvHN4/UVZF+epMLQtm2sqmS3z9l6OyE509brN+zRUbo/vwcR4+aeeB"
        "eQlVLNbvgOU/F/FncYRB1wp035WvPr3wSzP7Ylx5blDEdYFeaND5u6J2u/v6uqd32LmjLqsKdvN2bhj0OoG+sSoyf9+Kmyz3"
        "VuLXdkv5OPcYMfFGzvqr7Ldau6XlI3i/peRJlNWxzWxUwbnrZZ/VCfRwg86vS1jSeO3omCp2LuX96fOW8XFSHHRolbb0Otv9"
        "xcsxkhe8Pim4snjenIvs8qZj37Uu4OP5oWHffc1W7H9idVR7w6gPaXx+2qq+kmVmlOWv6cLHc/xx817qsnu030uMeoF8/PQl"
        "shqBrvqVla6wamD9DHzAnxv0LKa/Re04Pf/sv+KWPLlJ5wlvf0WWpKVg3QPm4nCp0tv6tEBvPwcOG/WTJRH+t842CHTnydHX"
        "pG37EO3/Y2XmbL+iKlYwfMGhLhtOGfXTkYnfXV94kbVMmHE7vtslgT+7+i/7a7iGP5/752eF1z0+z0I8c8vUVvz5FvGV+7rA"
        "QRVs86y9zpn5vJ3iJ6/y0pc2MlZ1qC4m6rxRz1scpp0yq4Elf2y9jRXx58CLjzSj55jfZw+KE0Y6H+T9Fvr62Jwf5t1nNYc/"
        "fv0HV/6uv6nlxPEPzerZp00p5RvPnOTfF/qErT1Nc4tM18zXLMjOUljAS1/aybOUEhKZSOKGyYsMdBkkNVwyYmlywUd2haRE"
        "LpK0dIeLowL6tIJkwtLElgXYtoZkQizpsIP5YDLSE8baA+ZmD5d90zEpYD4OcNnvJpIUOII/MFlwAn/0hrk7w2XcdG2sYb1d"
        "4FJuI3Jp7wfz7wtzU8JluqvJ5dcWfOYDtvDyaw9r0xXamcEleTD4sydc1r3hki52qbaHet6QBPiLXL4doD9PSBoCRC7pvSCZ"
        "8IG4EbvE94Z6PuCnYPBPd4i7ATA/r99JDhwhKXKH+YolD07Qzg38MhL8EQ7x2wPa24gkIz0hZnvBujmIJC2OEMv9YXw2MK4x"
        "0C/uGVfYY5gU2cFewiTRA/yPSZQS1t8T5otJlpPIunnAemAyFgb+6wX9qaCfYeBfV1g/HxjHEEj6RsF4FJA0u4skhyHw/74Q"
        "3y4iSWQ/8IM1JOVykWTTFvwgh3a9RZJTZxgXfiRwgf02BcbrBXHsC2cvJr19IK7MoV1fkSRZCX6XQv8WIsl0F1hnF2gnhXnN"
        "gP0zCOx7wfokwD6YCfORwbgVkNzHwvtyMNgfCP3jx4CZELfu0M4D4nI27Cs/sD8Qxp0I47WE95QK5usAHymmwrnmD+Pyhv01"
        "DuzHwHuqP6ynO+zXIDj31RD/g2CfTIaPKVFwbrhCO2v46DIJztFA8Is37Cs1vM9S4T3jCf25inzsCYT5DoB1UMHHoCToLxj2"
        "my/YmQ7tJ5he7o23+v8CrXUceQ=="
    ),
    "quad8_v2.2a.msh": (
        "eNptVctuIzkMvPdXCIbPgfgQJX3A7G0H+wvZiXcTII4HiS/z91PFRhy3x24DLZEUWSxS7P3fh4/nv07vx8fzog9aahnL/tvb"
        "05V4/8/zr4+XH4+v3x+Ph48lllq0lt2P0/vb4X23SJGyez38d+ZSy+795f/nXFvZ/Xs6n09Hbrzszqefu0WL4OzT6fj48rbL"
        "SFvv+++nJ7w8cKbywQnNt+EN2eLY8d1KfWj1+pcnlijyUO/IO+QtVwMndXt0VUwo+lYxUwHMgiPrGgnDal0nuBsY1aix1NyE"
        "UWo8Nf2OpsGzz80vU5XAga182qrp0NwcGatmrDBzPQnf/3SMOgLJVhGrRhL9us4C3Ibp1Fi542FQ46nROxoWLkK0esw+zaVl"
        "Fq1qN53QzFp7EqKspdkwU5gPH3UkjlCvQ0bTodMSR9IgYuGq3jo9MAGrGiLdQlozsfRJXtqAz9oCNTBxOgWUinOMM2uPTHum"
        "ZXf8ehpn48xRZQyfgDO7sNaW7IjqMCrrHNqdtFRBNl1nnTG9BU2JaliNqobz0WtvLbsB2MOhma1aY3iivTGNtaX+NEUzPEhM"
        "hIO5gx1P7gdJrlPDBVzT0O8Z9juG2YphBtZcp7YQWjaUx6fFHIHH05I1au4SLEer0roRuLM8M8M0G4kyq2yhwx3lB6F90qmj"
        "SF2RCagCNNbTss6txVAhr8jUyRxaBWVD6Np7tEhGeWm1XptapNeNqXNy8BYj5hXUNakNVDaJSyZlXRXAaExDcfTVBGtTHekR"
        "qGvypGOgFVuv0Yjc0BjoE7T2GGFs+MUtMwKNMuGl+RRj4Qe6yuoIbz68Ky+I+8oTGs9sVpWJpNiiXHbzHm6tdpLvLTO6wWlz"
        "gzN9RrK0Cd/T5yY8CeVMXofw/tvr4Xh4O3/gNnPMNwwu5fAVDOWBDWeQlIZPhl32rUSZGNKf+ygYvJzWn4LOOS4Y0xSsD8ao"
        "GAb0+NrD0jGoKXFsjNFlYEJ/SrhH603O5osMArjPGX2RdbxUOKpHfkGce0QxzuhPkfLFLJ1O8iMluWI6oAX3FvcR98x8WSNf"
        "2eA/iAe3CzW1FVVcGaUfzKiWTnpBe0+O7i+LVCcI6NDSGJ8jR/hXoJZRyAwisJWdhHC0X8WBk0lA2KKHnZA55Dd4ERgTi4hg"
        "ZAXtZsJ5f2WkdMNCocF4F4T1IbyLCTZwkuSit+AGDkCp2rVN0A2dDUKhrwqG+G24MmqJRkmApzOkbz3b8NJ/vwHn1qgr"
    ),
    "tet_v4.1b.msh": (
        "eNqVmllwU1UYx5ulaZo2XWXpSpqkaWkiUnZcSEVBFEFcEEVRCy200gVpQMENd2UHFRHccF/x3XF88U1ffBKfHGYEn5yxw8hY"
        "BKn3Nuc0N7/cL7fegTk553znf77z7edAdEX3UM/Swa39nanAnBntofbQgoCroKAgEF0y0GWZi67q2THUu6Gzb2Vnf/dQYH5g"
        "lkEa7uvemAobP2eFwlt7N/WM/Z4dCq8fTKUG+83OnFA4NbjF/DXXGO7csNn8OS8U3rh1cMCgnh1qn2mSd+0Ij22YvYkxkupN"
        "9Rq//AXpr1S1PtW60OZ+w0n9y13g/HnE9Rkcb5499FeY+dkh0fpEmsxXlEOTy49fpMl8pnyWff3tsXOndn6n24KCXdb+It0e"
        "P3eq1k5uZjtqfG4Llsb4sXbVD6OjfyaJIWGZ/PxrYHksWBqDfDlheRWW14YvnHkcS/ftznjJwDL11x1sPWv8TBJzxYXNQVPW"
        "TvIy9XvRAPBZsCgvjeV0RpOfCwZAkQWL8pooll9h+W340mclliQv82wjBkDxWM9W5jnyyif7fwysgA0W5eUke5eSfYkFCzY6"
        "4TN61RlLbbD+rx49SvYuG1t1sntrrNMxaFTZvYl7WfkmdepkHy4Ljxr3orKPIqUTj41OnPzBZTmzxv1bnT2g9vDayHSi/Hot"
        "uOcVj6VKvoUW3Inatsviaxr3krJtv9rDZ4PrZAMui69o3MvKzs2xv5RMiDtROQQsuUTHZx0PdfwZS67j2TS6crDLaOrUogSS"
        "aAKJY2KJNpN43KD9P4nXJSbi3OTnxRqvQwFgTcyu3EQtJmsWG768a7ITtys3kYvJ3I81/rxr0nTUS3Fe+Z4eMxrqJyDQ6v1c"
        "NvopEWRt3Yf6Kc27T5qO+gkKsrbuQ/2UYY3deaifckHW1n2on4q8+6TpiuEDlaqtUu261eZ3NqdgWzM2ft62kAsAs1q1V+TF"
        "HE7aY6blUQLMSaqdbIuZscFszGzbLAXmFNVOzYtJPjPjbhtfr1FtrWp1TKuH3PYd2vP9kW9+Suo2e/YXFUzPjI9vP7H84N4D"
        "Z5KLj/6xbSD18/i4GbhHR39P6taNQsH8GlTbqNppqg3BXgSeOgSeOgSeOux48iCONqk2rNpIli3zwnBa7Z2x5f2/LTD+/KrG"
        "R8bHF45NnE5aiwe9Z1S1zaqNZc3zIpPGsPqp3tOdtedwcrdlvBB7tqi2VbXTbffMnEv77EGFmZ33RpJ7Me62xBu9Z5tq47b5"
        "lHsOj59Tyy5bDiPJw1l7pmMQ8+5YQk+n8eiSvu7+7oHUUEAHtZMIVCctzOsEUCYkDhccSkoWtRCCGzg1cAoGgxok4ADw6pFs"
        "PUg89UisJdivDkmUfNQJ/BbjfAGhX499S4QAVIq2BnRBh0BWhn4t8N2Wv2VIZkEEokIkrkLMlyFJ+RDQgkheFZj3ISGVIfAV"
        "IVEVYb4cyaccAdSPpOTHfAUSDQNxEAmoEfuXQRflmJ8GHVRgvAG6asB8I3THxNBo0akHOm0Q/DWMtdWgC2MvFiRh8MBCJYwE"
        "EoTtREBXCB1H0PqAE0GyqAJdBEmEBVQTkkulkPBaMF4F/FbwXQ366ehXA78N65uArxOkVadxxLZmxJIE7LkZ9FeCvhmxbgb6"
        "zfCvq2DnMfjlTPRj8J92+GEMeLPgrzHQzwY/UdDPwXwz6OaiH8P6eeA3CnnOFwoVPb8A62Og1wWIVacL4UelsK+rYaduzF+D"
        "dV7MX4vxSZi/DrHJB/tdhPEqzCehowrMdwgxWM9fD9xK+N9i9CvB/w1Y3wL8G4ULiqZbgnkWhEsxPhn4usCz6vQmxNQ4aoFl"
        "iAlx0N8Mevr9LejHYYfLkZ8SiLW3op9ALFoBP04AbyXsPAH624DXhvOuEgphPX871idAfwfO2wZ+7sR8HHR3oZ/Aeo/l1XSt"
        "GlsNX24S7O1uYZ6xaI3AQxPo7hHGY9j3XgccTb9WyHPNWHefUPNMA979qFHqgKdrn3XYLww67W8PIA/GwJc+34PQbVg4x0PA"
        "iQh5ulO4hDeAbj3OWQP+9Xk3YF/WdBqvC3itgvy6hdovgX02Qi71At4m4EQEvB6sDwNH89sr4NFOHxb0VQu+N0P+EUF+fcBr"
        "Fe5H/UKdxtgwIMQc1gSDsGep5tgi1IMtyFuP4ByVQh26VYidU7DvkBBDm7A+hXVTBTvYJvgb69vtOG9EqKMfFWqoOPh5TKhb"
        "GLd2wD8SQi22U6gnaD+PC3GH95QnhFxPP3kS56Rf6nVPCe8alNPTOB/vxvq8uwR5kP4Z4W7M+Pes8D7Rijj2HPiuE95BnnfI"
        "L/pu8ILwnsM7zos4H2sgvc9LDnLT+74s3D/5hvEK5MS4pe1+txAn+WayR3hHi8Ou9sLepHe5feCjQbhn7xfu+5XQ9wHo3S3Q"
        "HYTd0q71eQ4J7xSM44eFtxTeK14V3vFop6/BThoFe3ld4JvvfUcc4reW/xvwxzYhjh8V3gmqse5NIR/xjnxM8DPK77jwRkD5"
        "vYXxSkF/bwv3R/rRO0K+L4R/vCu8SfKu8p4Qp3jfPiG8S/Mc72Ocdzetlw8EviLg+0PhjlcP+/rIIS5r+X0s1OFexM9PHOKt"
        "todPIbdJwhvRZ8I9n/Xf5w75VMvlC9hvXKhfvhTuZXHw9xXopgtvTSeFe34U/pX+HxL6X1L+A7EnzhE="
    ),
    "tri_v2.2a.msh": (
        "eNp1VctuHDcQvPMriMWeB2Q/+PgA5xbDv6BYm0iAVhtIe8nfu4ryjsmVMxI07Ce7qrtHxz9P709/XN7OD9cgm8QUWzh+eX2c"
        "1MdvT/+9P39/ePn6cD69hxJSlBQP3y9vr6e3Q8gxx8PL6e8rjxIPb8//PI2zxsNfl+v1cqZg8XC9/HsIEjNiHy/nh+fXw7hp"
        "zX78ennESxpiEn8QIeOteEMXDBLfHtNmaXn6cCwwtNXQhqHGvMmiH3eEBn0Zp867Nl0fBAcUTUtZn04L8G/el2fUl1Huln9n"
        "UGSqq8E+LMbb++9inPXd36+0jMrvax4xxFuzeJLuuScvBVA2T6ZVUjbz0lodOaiXVq3XZC11UxX77ErPUc4mVYt4qalnFXFn"
        "m0Z9YqV2Lc29tVYGHJVcsks2xQ1CMoWUaXWVVBTJcya8e8+RlKR7SRUEZ1ft1agHqmYF9TbLKfdW6KpIatoFMwFjSeL1fzxZ"
        "1h3JJKBYBeDcJddetAxXJ4UoFbbMhutIKqxEtWozK3kQI5w6cdGmqFYbTsywVTAKsgyIcrIudB19sVpyQbUl46SfPQdRoy8g"
        "VV0aupoKAH6+n0xxkz5W5/jl5XQ+vV7fgzuX0zG5wpXJXD4IynP0oLvksQTbpRIrlusmVXwQyi61KFwjphw/nctzO2O1Q99F"
        "rIxybygbghGex7b8lHmUsSU3BY7K7dgV+DUuxa6waFyFPD4FEICOC3CTaSpj7m8K2DjdP+uBGl8Ri5I5yL+UaSiFM/xLmanM"
        "ndO6KxkFzzGYu7JSXTiAu6owp3PSdlVjxsqJmgK5CZ2zs9yQmK1OOqBohCoTEv6p4F8mIMgNv6ATDLCMVBp0QoGDo6s6YUCh"
        "hWTrBAL9IADETjBkKNEn9dVztFdnJKR0eNaVahxx+Qyljr4g/K4pDRxaWjh0+tncktFRTJJNcNjyxj6Zrh3FgNRgE54+Ugab"
        "0TjJsGAzmMEstmTComQWI29tpYfdCtZXfIQYPK30FA6d53U8K4l0WTpNJZZS15yO9rutqAvnxH0ZHpb+8V99/zT8AHTdemQ="
    ),
    "tri_v4.1a.msh": (
        "eNqdVtluGzkQfOdXEIJeNWAfvD4g+5Zgf8EbK2sBlrWw9ZK/36oeKYhWzoEdwTx62MWqZrPH24/7t6c/Tq/Hh3PyRXLJI20/"
        "vDx+Z97++fT17fD54fnTw3H/lloqWUvefD69vuxfN0my5M3z/suZQ82b18PfTzG2vPnrdD6fjpx43pxP/2ySZoHv4+n4cHjZ"
        "xE636LCcD+cDRg4f8EnkxJ9wV/jrZZ4Mw/Ul1pbrUPJuLvPyeLfmrvtdGXkn6Pq106XEA/Yxv7R5Bd0pd5Irzi8gv8P6L2rW"
        "+O2MdH+AUq7WUq7evwHsgAWkU/xV2k9ZXto7IHIkxM9C97/l47A9djD0cdzfznf76fSIbmYdXDHSeoSSJMUBM81irkkvc4u5"
        "pTj3RGjOffWMRIQtVaRoT8BbvNw8c4VZxq15hFkWvbHKxdrWPrhomkkK6Sx2+wAjzO32meFqQUugTJNYEoyXOm+eVcAi71jL"
        "0m+tfjHbfA8jgoJ9ahLe1DtKFpG7EyAhIA4Azj3JSDKTwogDwAkg6J60Jm1Je8JpydJFa9FZZZbaGvO4FreuRdxrG6PHVouO"
        "7rMXH2W6mfr9uvWSL4rU0tp6mWKqtYZ3U299Whu1jjGaB3OVJlXFDdg6InLWq2lpBkwRqffLVrjaSkfopZrN7jRCxvAGjsOl"
        "yBwt4NymInvwphWt/f1l3y7u9WEMmnfIk6nSZ7O2wnXQwwthSljAKQmYdRvuTSIGMFa1YWBoAyP6Lh2R45WDBCk+dYXz3qSB"
        "YROM7H7ZWOEQPKs6cLylQdH9tgwKL+V6FbcfnvfH/csZNT4j/IImrhbCKXG7ooE5MqWypNXcWIBa7jlVNCPDd+CyxI1B6ifU"
        "hzxzGmhQDFK0luNWEClmQmhhJ/RUdsJFxk5QOfAn/CBEfhMWnJzEkOXBDzSks5Oo3Kw4yFEwQUFHqeQGkx8QTljcC22YwIoU"
        "Z8c3/MAoZGAKQPg22rALXg56QKZS5+qC25BXWK5etx/BijUNoeuUrhMIUeSSFYrESn4P4uNQGTJjBSYWBJpRPclwTbAlTU5q"
        "vFnDZbFa1zhZD2nK3RNqEfalbi5bRQ9q8EINNewudCQwguHhiEXU7+GIZQBJ7hBAFwwrhYEkvzgtKnZE3SmG2uk7gm5EIfkM"
        "HkEl1RJ0WwS/StDrIaTGfwScMIUsfCrDVj1YxfGmGkfMLcflM3JN1X8Bc3umdA=="
    ),
    "tri_v4.1b.msh": (
        "eNqVVllrE1EUzkyni9Pd2nYyiTqOsXVpazdbX+wUoeqDlipKQRGpbWpDm0TSAVFBFP0JUrT6IgiiL4Kg+ODyZsXSEsV9AXdc"
        "HtQqitYa56Z3kjtfcoteCN+ck3POnOU7N/Ft8A/2rQlHgl2m3FhTp9VpK2XB5XLJvrZQD/Odr6Nv72Cgu2ugvSvoH5Sb5Fqt"
        "vlbTu8ORkD+iy8RRH/D3muSxXtMjgV198ecGTd8ZNs1wkAiNmm6Gd+tyvVZn+faEg12BkB5/kzO6pTEDZsB6klzTx0bB5Two"
        "p/tujvURk+pWnn1Gis1nA22kFK9Um+n3HhyeeLDv2rrzVxy44Wd/PolP5RYbBSYHkYnzJxaLEdmfv/iN9WhgXDveiYkHKskF"
        "44lMPIJTVpAMJr9RteNWLPbJ+Nd4EhOPxPltxSM6259TdwsvnsDEI3GscDG2f/9brwxcEWmekk3pBLN87eEeC2ZRYy+QxpuG"
        "SMI/kM7FNJu1FZ1ft85EQCGVkFxS4mJIabNJ+ghpbDMpZlHMpphD8dxxch6lEP1UXP8+Rd/UQM7XFP1w3P5n2oURoU+zmIGy"
        "Pdi+hZx7GKO1M65/46gzA+rMpZhHMZ9iAcUhR37JntU66knqjzrqT+qPOfrl7L0EdRZSLIKCNkE9Tn2yfpGZp11XMcXZFEuY"
        "i5CcUoplFMspKhTdFFWKHtgJJTp6INA7aTw/0j0SXfg8kcvp61Fpa+8d4xnoRdqHyI1fLaWHbyf0+9e1D+2YemXsH3vp11cn"
        "a7r55GFjh/Dd2AP6UOeSkWtfXhiP7zVUXZh6m9Cv3dx/Usv+kaInlye53D6+rb609fLrhH69mXe2aGzSuFvc++H+xFhCPz55"
        "sTO3Mmo8/bax8/KZdwl93qHZS1d9nzRegP5xzfi2q6NRYxzixC+a6evF1zbgD/pD5qBsL1czLGwzLELhDBeOwHwyORdNJlwe"
        "uNwSZ9kzOcufBbIIS8suWjZniXM4S41yBiwvWyfa5HIwj4P5HCzgoARLy9ZZCDa4xCgXgyzA8hKsgKXFpSzlLLMCy4xLroAf"
        "xlHArwxmWQI8KAd5DvBHgZmXQjw3yJiPyqkzCy6jIuhXIVxSMvTe5tpcyBd/+OcBnzzAu/nAcTfUqwE3VODVAuClAn3VYQ4K"
        "8HUh+JdDvj54Xxn4L+LM2+5jBfStHOZUCf5e6Odi6Icb/JdAPgrUsxTy8cL7lkE8N+RbBfN2w7yqgS8qzKuG80fQ5tty4IMH"
        "+FYLfVWhnjrI1wN9rof5qRCvAew9MP9GyMcD71sBshv61QT5qtCvZuiHF+yn/2Xbv3p/Afe/gcc="
    ),
    "unnamed_v4.1a.msh": (
        "eNqdVUmOGzEMvPMVOszVDXHR9oDklvwhQAwkQBYgM/9Hqig7GI8nC9KGpRabLFVREvXw7vz46e33H18/PEkcWmqZ8vDm28dn"
        "ZgyfPj99Pj9KlChwEbrxp8VqESt2GYvjdX+Eb72+ajmtY12eGN4j7Hyqs5wU3bh2dtR8tOzxpS0b9GScSa84f4F8hvUStVj+"
        "Tk66v0GpV2ut1+h/AA7AAjIo/irtjywv7R0QORLiT6n7b/lacxVJFUy51r/W9+H994/oVrFJjyl7CVVUcoHRWo5N7DL2HLvk"
        "uguhOY4dKZrxIU26DAHeEfXmWRvmmLfmmWY97MaqF2vffXIxWaKVdA6/fYCR5n77rAz1pKVQZqIuivejrZtnCzj0FWs9xq01"
        "LmZfr2FkUjBPE+1M5EtKnpm7E6ApIBcAwUN0ii4xGLEAWAEkPcSaWBcbgtXSY6i1aqvpqq137uNWw4dVjWh9zpFTHTZHrFFj"
        "1hXuFvd++5Afhq1lrY+61M1ay+hu0cfyPlubc/ZI5qZdm2k4sG1m5nw0t9odmKra7t02XOt1IPXa3NcIGiFjRgfHGVp1zZ5w"
        "4cuwe/ClV2vjdbdfB/f6MAc9BuTpMh2re99wA/TwQbklPOGMBNyHz4iumQMYm/l0MPSJN8YeA5njkYMErbFsw8Xo2sGwK978"
        "3m1uOCTPm00sb+1QdD8tk8JDuY/iw5sv56/nb0+P0gvSr2jyaCGdmqcrG5hzpzSWtFY6C1Avo0hDMwtiJw5LnhhsfUF9KKvI"
        "RINiINl6yVNBpBwpoZWdMtLYKZ2cnaJy4K+8EHJ/ExacgsSwy5MfaOhgp1m5WXGwR8EEBR2lkhMsXiAcsLhX2jCAFVucHb/w"
        "gjHIwBCAiO20YRZ8nIyATKPOHYLTUDYsvff0M1mxpiF1g9JtASGLnHilSHjyPsjLoTFlzgpMLAh0p3qSoU+yJU0OWn7Z6fL0"
        "tp0nHynNOLugFmFe6qbbFj2pISo1tLSHMpDASEZkIJyoPzIQbgCRCAhgCF4bhYEkb5yeFTuzHhRD7YydSTezILGSR1KRVpNu"
        "z+Q3TXojhTRjKAfcQp4xjWlrkaxyeaXlEnPKeblGrlv1JwSrh6Y="
    ),
}


def _gmsh(tmp_path, name) -> Path:
    path = tmp_path / name
    path.write_bytes(zlib.decompress(base64.b64decode("".join(GMSH[name]))))
    return path


def _affine(faces, H):
    k = H.shape[0]
    return [DirichletBC(f, c, lambda X, c=c: (H @ X)[c]) for f in faces for c in range(k)]


def _P(F):
    """Compressible Neo-Hookean first Piola-Kirchhoff stress (3D F), written out here."""
    lam, mu = E * NU / ((1 + NU) * (1 - 2 * NU)), E / (2 * (1 + NU))
    Fi = np.linalg.inv(F).T
    return mu * (F - Fi) + lam * math.log(np.linalg.det(F)) * Fi


def _write(tmp_path, name, points, cells, **kw) -> Path:
    path = tmp_path / name
    meshio.write(path, meshio.Mesh(points, cells, **kw))
    return path


def _tri_points(mesh):
    """A 2D scikit-fem mesh's nodes with z = 0 (as Gmsh and VTK write them) and its triangles."""
    return np.c_[mesh.p.T, np.zeros(mesh.p.shape[1])], mesh.t.T


def _with_tagged_lines(mesh, names):
    """A meshio mesh as Gmsh writes it: z = 0, a vertex element, the boundary lines tagged by
    physical groups (``names``: name -> boundary of ``mesh``) and the cells in group 99."""
    lines = [mesh.facets[:, mesh.boundaries[n]].T for n in names]
    tags = [np.full(len(f), i + 1) for i, f in enumerate(lines)]
    cells = [("vertex", np.array([[0]])), ("line", np.concatenate(lines)), ("triangle", mesh.t.T)]
    phys = [np.array([50]), np.concatenate(tags), np.full(mesh.t.shape[1], 99)]
    field = {n: np.array([i + 1, 1]) for i, n in enumerate(names)}
    field.update(domain=np.array([99, 2]), corner=np.array([50, 0]))
    return meshio.Mesh(np.c_[mesh.p.T, np.zeros(mesh.p.shape[1])], cells,
                       cell_data={"gmsh:physical": phys, "gmsh:geometrical": phys}, field_data=field)


# ----------------------------------------------------------------------------------------- Gmsh


def test_gmsh_versions_read_alike_and_unnamed_groups_go_by_tag_number(tmp_path):
    """Gmsh 2.2 ASCII, 4.1 ASCII and 4.1 binary files of one mesh give the same mesh and the
    same physical-group boundaries (the point group 'corner' and the surface 'domain' are no
    boundary). Physical groups without a name had been dropped (the faces were named by the
    bounding box, the tags lost); they are named by their tag number."""
    meshes = [load_mesh(_gmsh(tmp_path, f"tri_v{v}.msh")) for v in ("2.2a", "4.1a", "4.1b")]
    ref = meshes[0]
    assert isinstance(ref, skfem.MeshTri1) and ref.p.shape[0] == 2 and ref.t.shape[1] == 38
    assert set(ref.boundaries) == {"left", "right", "bottom", "top"}
    for m in meshes[1:]:
        assert np.allclose(m.p, ref.p, rtol=0, atol=1e-14) and np.array_equal(m.t, ref.t)
        assert {k: sorted(v) for k, v in m.boundaries.items()} == {k: sorted(v) for k, v in ref.boundaries.items()}
    un = load_mesh(_gmsh(tmp_path, "unnamed_v4.1a.msh"))
    assert {"1", "2", "3", "4"} <= set(un.boundaries)
    for tag, face in zip("1234", ("left", "right", "bottom", "top"), strict=True):
        assert sorted(un.boundaries[tag]) == sorted(un.boundaries[face]) and len(un.boundaries[tag]) > 0
    # the patch test through the tag numbers: u = H X on the whole boundary gives F = I + H everywhere
    s = MacroSolver(un, LAW, _affine("1234", H2))
    F = s.solve(n_steps=1).final.F
    assert np.abs(F - (np.eye(2) + H2)).max() < 1e-12


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_neo_hookean_bar_in_plane_strain_tension_matches_the_closed_form(tmp_path, scale):
    """A 2 x 1 bar (a Gmsh 4.1 binary file; and the same in millimetres, coordinates x 1000)
    on rollers at x = 0 and y = 0, pulled 10 % at x = L: F = diag(a, b, 1) with P22 = 0 in closed
    form, the reaction P11 * height, equal and opposite on the left; nothing assumes units, so
    the millimetre bar's reaction is 1000 times as large (stress x length)."""
    path = _gmsh(tmp_path, "tri_v4.1b.msh")
    if scale != 1.0:
        m = meshio.read(path)
        m.points *= scale
        path = tmp_path / "tri_mm.msh"
        meshio.write(path, m, file_format="gmsh22", binary=False)
    mesh = load_mesh(path)
    L, Hh = 2.0 * scale, 1.0 * scale
    s = MacroSolver(mesh, LAW, [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("right", 0, 0.1 * L)])
    final = s.solve(n_steps=2).final
    a = 1.1
    b = brentq(lambda b: _P(np.diag([a, b, 1.0]))[1, 1], 0.5, 1.5, xtol=1e-15)
    P11 = _P(np.diag([a, b, 1.0]))[0, 0]
    assert np.abs(final.F - np.diag([a, b])).max() < 1e-10
    R = final.reactions
    assert R["right"][0] == pytest.approx(P11 * Hh, rel=1e-10)
    assert R["left"][0] == pytest.approx(-P11 * Hh, rel=1e-10)
    assert abs(R["top"]).max() < 1e-10 * P11 * Hh


def test_second_order_gmsh_plate_keeps_its_hole_and_is_quadratic(tmp_path):
    """A Gmsh 4.1 binary quarter plate with a curved hole in triangle6 (line3 boundary
    elements): its 'hole' group had been lost (scikit-fem's reader matched 'line' facets only,
    so the bounding-box faces were named instead) and it was solved with linear elements. The
    hole is there, the element is tri2, the patch test is exact on the curved mesh and the
    reactions of all five boundaries balance."""
    mesh = load_mesh(_gmsh(tmp_path, "plate6_v4.1b.msh"))
    assert isinstance(mesh, skfem.MeshTri2) and default_element(mesh) == "tri2"
    assert {"hole", "left", "right", "bottom", "top"} <= set(mesh.boundaries)
    assert len(mesh.boundaries["hole"]) == 2
    X = mesh.p[:, mesh.facets[:, mesh.boundaries["hole"]].ravel()]
    assert np.allclose(np.hypot(*X), 0.3, atol=1e-12)
    faces = ["left", "right", "bottom", "top", "hole"]
    s = MacroSolver(mesh, LAW, _affine(faces, H2))
    assert s.element == "tri2"
    final = s.solve(n_steps=1).final
    assert np.abs(final.F - (np.eye(2) + H2)).max() < 1e-11
    # rollers on the cut edges, 5 % stretch, a free curved hole: the reactions balance
    R = MacroSolver(mesh, LAW, [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("right", 0, 0.05)]
                    ).solve(n_steps=2).final.reactions
    assert R["right"][0] > 0.1 and abs(R["left"][0] + R["right"][0]) < 1e-12 * R["right"][0]
    assert abs(R["bottom"][1]) < 1e-12 * R["right"][0]


def test_a_3d_gmsh_mesh_passes_the_patch_test_and_refuses_a_2d_element(tmp_path):
    """A Gmsh 4.1 binary tet mesh with its surface triangles in physical groups: the faces are
    the groups, u = H X on them gives F = I + H at every Gauss point; a config asking for tri1 on
    it is one line naming the elements that fit."""
    path = _gmsh(tmp_path, "tet_v4.1b.msh")
    mesh = load_mesh(path)
    faces = ["left", "right", "bottom", "top", "back", "front"]
    assert isinstance(mesh, skfem.MeshTet1) and set(mesh.boundaries) == set(faces)
    final = MacroSolver(mesh, LAW, _affine(faces, H3)).solve(n_steps=1).final
    assert np.abs(final.F - (np.eye(3) + H3)).max() < 1e-12
    assert np.abs(sum(final.reactions[f] for f in faces)).max() < 1e-12
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "t"\n[mesh]\nkind = "file"\npath = "{path}"\nelement = "tri1"\n'
                   '[[dirichlet]]\nboundary = "left"\ncomponent = 0\n')
    with pytest.raises(ConfigError, match=r"mesh.element = 'tri1' does not fit the 3D tet cells .* \['tet1', 'tet2'\]"):
        load_config(cfg)


@pytest.mark.parametrize(("name", "msg"), [
    ("mixed_v4.1b.msh", r"mixes 2D cell types \(6 quad, 14 triangle\)"),
    ("quad8_v2.2a.msh", r"has quad8 cells, which the macro solver does not take; use quad9"),
])
def test_mixed_and_serendipity_cells_are_refused(tmp_path, name, msg):
    """A Gmsh mesh of triangles and quads had been read as its quads alone (45 of 118 cells in a
    larger one, the triangle half of the body gone and its face 'right' empty); quad8 had been
    'expected a mesh format meshio reads'."""
    with pytest.raises(ValueError, match=msg) as e:
        load_mesh(_gmsh(tmp_path, name))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------- other formats, same numbers


@pytest.mark.parametrize("fmt", ["gmsh22", "vtu", "xdmf"])
def test_the_built_in_plate_and_its_file_give_the_same_reactions(tmp_path, fmt):
    """The built-in quarter plate with a hole (triangles) written as a Gmsh 2.2 file with tagged
    boundary lines, as VTU and as XDMF (bounding-box faces, 'hole' from scikit-fem's own tags)
    and read back: the same reactions to round-off."""
    if fmt == "xdmf":
        pytest.importorskip("h5py")  # meshio's XDMF needs it (the dev extra installs it)
    plate = plate_with_hole(n_theta=3, n_radial=3, grading=1.5, element="tri1")
    bcs = [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("right", 0, 0.05)]
    ref = MacroSolver(plate, LAW, bcs).solve(n_steps=2).final.reactions
    path = tmp_path / f"plate.{'msh' if fmt == 'gmsh22' else fmt}"
    if fmt == "gmsh22":
        meshio.write(path, _with_tagged_lines(plate, ["left", "bottom", "right", "top", "hole"]), file_format="gmsh22",
                     binary=False)
    else:
        plate.save(str(path))
    mesh = load_mesh(path)
    assert "hole" in mesh.boundaries and sorted(mesh.boundaries["right"]) == sorted(plate.boundaries["right"])
    got = MacroSolver(mesh, LAW, bcs).solve(n_steps=2).final.reactions
    for face in ("left", "bottom", "right", "top", "hole"):
        assert np.allclose(got[face], ref[face], rtol=1e-12, atol=1e-13)
    # equilibrium: x is held on left and right only, y on bottom only (no load on top and hole)
    assert abs(got["left"][0] + got["right"][0]) < 1e-12 and abs(got["bottom"][1]) < 1e-12


def test_clockwise_elements_and_unused_nodes_change_nothing(tmp_path):
    """Clockwise triangles give the same answer as counter-clockwise ones. A node of no cell
    outside the body (a leftover Gmsh geometry point) had moved the bounding box: the face
    'right' was empty, a condition on it held nothing and the patch test failed by 5e-2."""
    rect = rectangle(2.0, 1.0, 4, 2, "tri1")
    p, t = _tri_points(rect)
    faces = ["left", "right", "bottom", "top"]
    ref = MacroSolver(load_mesh(_write(tmp_path, "ccw.vtu", p, [("triangle", t)])), LAW,
                      _affine(faces, H2)).solve(n_steps=1).final
    for name, pts, tt in [("cw.vtu", p, t[:, ::-1]), ("unused.vtu", np.vstack([p, [[5.0, 0.3, 0.0]]]), t)]:
        mesh = load_mesh(_write(tmp_path, name, pts, [("triangle", tt)]))
        assert mesh.p.shape[1] == p.shape[0] and len(mesh.boundaries["right"]) == 2
        got = MacroSolver(mesh, LAW, _affine(faces, H2)).solve(n_steps=1).final
        assert np.abs(got.F - (np.eye(2) + H2)).max() < 1e-12
        for f in faces:
            assert np.allclose(got.reactions[f], ref.reactions[f], rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------- bad meshes


def _bad(tmp_path, kind):
    rect = rectangle(2.0, 1.0, 4, 2, "tri1")
    p, t = _tri_points(rect)
    if kind == "empty":
        (tmp_path / "empty.msh").write_text("")
        return tmp_path / "empty.msh"
    if kind == "points only":
        return _write(tmp_path, "v.vtu", p, [("vertex", np.arange(3)[:, None])])
    if kind == "lines only":
        return _write(tmp_path, "l.vtu", p, [("line", np.array([[0, 1], [1, 2]]))])
    if kind == "degenerate":
        return _write(tmp_path, "d.vtu", p, [("triangle", np.vstack([t, [[0, 1, 2]]]))])  # 3 nodes on x = 0
    if kind == "duplicate nodes":
        n = len(p)
        t2 = t.copy()
        t2[::2] += n  # half the cells on a copy of the nodes: a body cracked along every edge
        return _write(tmp_path, "dup.vtu", np.vstack([p, p]), [("triangle", t2)])
    if kind == "off the plane":
        return _write(tmp_path, "xz.vtu", p[:, [0, 2, 1]], [("triangle", t)])
    if kind == "tilted":
        return _write(tmp_path, "tilt.vtu", np.c_[p[:, :2], 0.1 * p[:, 0]], [("triangle", t)])
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "msg"), [
    ("empty", r"empty.msh is empty"),
    ("points only", r"has no 2D or 3D cells \(cells: 3 vertex\)"),
    ("lines only", r"has no 2D or 3D cells \(cells: 2 line\)"),
    ("degenerate", r"1 degenerate element\(s\); element 16 has zero size"),
    ("duplicate nodes", r"pair\(s\) of distinct nodes at the same point"),
    ("off the plane", r"do not lie in one plane z = const"),
    ("tilted", r"do not lie in one plane z = const \(z spans 0.2"),
])
def test_a_bad_mesh_file_is_one_line_naming_the_problem(tmp_path, kind, msg):
    """Each had been a meshio/numpy message ('need at least one array to concatenate', 'Mesh
    type(s) not supported'), a solve that failed with 'an element inverted' (a zero-area
    triangle, nodes not shared, a mesh in the x-z plane) or, for a mesh in a tilted plane, a
    silently projected answer."""
    with pytest.raises(ValueError, match=msg) as e:
        load_mesh(_bad(tmp_path, kind))
    assert "\n" not in str(e.value)


def test_the_solver_names_a_degenerate_element_and_an_empty_boundary():
    """A scikit-fem mesh given to the API: a zero-area triangle had failed 8 cut-backs later as
    'an element inverted'; a condition on a boundary with no facets was accepted and held
    nothing."""
    rect = rectangle(2.0, 1.0, 2, 1, "tri1")
    t = np.c_[rect.t, [0, 1, 1]]  # a triangle with a repeated node
    bad = skfem.MeshTri(rect.p, t).with_boundaries({"left": lambda x: np.isclose(x[0], 0)})
    with pytest.raises(ValueError, match=r"degenerate element\(s\); element \d+ has zero size"):
        MacroSolver(bad, LAW, [DirichletBC("left", 0), DirichletBC("left", 1)])
    empty = rect.with_boundaries({"nowhere": lambda x: x[0] > 10})
    with pytest.raises(ValueError, match=r"boundary 'nowhere' of the mesh has no facets"):
        MacroSolver(empty, LAW, [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("nowhere", 0)])


# ------------------------------------------------------------------------------------ the CLI


def test_scalebridge_fe2_reads_the_mesh_once_and_names_the_boundaries(tmp_path, capsys, monkeypatch):
    """The mesh file had been read twice per run (the config's element, then the run); once
    now. A misspelt boundary is one line listing the file's boundaries; the run's reaction is the
    API's on the same file."""
    import loops.fe2.mesh as meshes

    _gmsh(tmp_path, "plate6_v4.1b.msh")
    text = ('name = "p"\nplots = false\n[mesh]\nkind = "file"\npath = "plate6_v4.1b.msh"\n'
            '[[dirichlet]]\nboundary = "left"\ncomponent = 0\n[[dirichlet]]\nboundary = "bottom"\ncomponent = 1\n'
            '[[dirichlet]]\nboundary = "right"\ncomponent = 0\nvalue = 0.05\n[load]\nn_steps = 1\n'
            '[material]\nprovider = "analytic"\n[material.analytic]\nE = 10.0\nnu = 0.3\n'
            '[executor]\nkind = "serial"\n[tracking]\nenabled = false\n')
    (tmp_path / "c.toml").write_text(text)
    (tmp_path / "bad.toml").write_text(text.replace('"bottom"', '"bottm"'))
    meshes._READ_CACHE.clear()
    reads = []
    real = meshio.read
    monkeypatch.setattr(meshio, "read", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert scalebridge(["fe2", str(tmp_path / "c.toml"), "--quiet", "--output-dir", str(tmp_path / "runs")]) == 0
    assert len(reads) == 1
    import json

    got = json.loads(capsys.readouterr().out)["final_reaction"]
    mesh = load_mesh(tmp_path / "plate6_v4.1b.msh")
    bcs = [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("right", 0, 0.05)]
    want = MacroSolver(mesh, LAW, bcs).solve(n_steps=1).final.reactions["right"][0]
    assert got == pytest.approx(want, rel=1e-12)
    assert scalebridge(["fe2", str(tmp_path / "bad.toml"), "--quiet", "--output-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("fe2: ValueError: dirichlet[1].boundary = 'bottm' is not a boundary of the mesh; "
                   "known: ['bottom', 'hole', 'left', 'right', 'top']")


def test_a_format_whose_reader_needs_a_missing_package_is_one_line(tmp_path, monkeypatch):
    """meshio reads XDMF with h5py, an optional package: without it the read had ended in a
    bare ModuleNotFoundError from inside meshio."""
    import meshio as _meshio

    def read(path, *a, **k):
        raise ModuleNotFoundError("No module named 'h5py'", name="h5py")

    monkeypatch.setattr(_meshio, "read", read)
    f = tmp_path / "plate.xdmf"
    f.write_text("<Xdmf/>")
    with pytest.raises(ValueError, match=r"needs the Python package 'h5py'.*pip install h5py") as e:
        load_mesh(f)
    assert "\n" not in str(e.value)

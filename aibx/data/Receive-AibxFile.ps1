# aibx: receive a file on stdin
# Run by the WinRM transport as powershell -EncodedCommand; aibx replaces __AIBX_PATH__, __AIBX_SHA256__,
# __AIBX_TOKEN__ and __AIBX_EXCLUSIVE__ (single-quoted PowerShell strings) and streams the content on stdin as
# base64 lines.
# The content goes to $part, a new file beside the destination under a name random for this run (the token),
# created exclusively (FileMode CreateNew fails on anything already there: a file, a symbolic link or a junction,
# which it never follows); its SHA-256 is checked on disk, and only then is it moved into place: a failed or corrupted
# upload never leaves a partial file at the destination. A destination that is a reparse point (a symbolic link or
# a junction) is refused. $exclusive ('yes': aibx's own temporary files) moves the file only where nothing is (Move
# never replaces): anything at the destination, planted by another user, fails the upload.
# Exit codes: 0 ok, 3 parent directory missing, 4 checksum mismatch, 5 other error, 6 destination is a directory,
# 7 something is in the way (a reparse point, or anything at all for an exclusive upload).
begin {
    $ErrorActionPreference = 'Stop'
    $ProgressPreference = 'SilentlyContinue'
    $path = '__AIBX_PATH__'
    $sha256 = '__AIBX_SHA256__'
    $part = $path + '.aibx-' + '__AIBX_TOKEN__'
    $exclusive = '__AIBX_EXCLUSIVE__' -eq 'yes'
    $reparse = [IO.FileAttributes]::ReparsePoint
    $out = $null
    $created = $false
    function Stop-Upload([int] $Code, [string] $Message) {
        if ($script:out) { $script:out.Dispose() }
        if ($script:created) { [IO.File]::Delete($script:part) }
        [Console]::Error.WriteLine("AIBX-UPLOAD-ERROR $Message")
        exit $Code
    }
    # the attributes of the name itself (GetAttributes follows no link); $null when nothing is there
    function Get-Attributes([string] $Name) {
        try { return [IO.File]::GetAttributes($Name) } catch { return $null }
    }
    function Assert-Free([string] $Name) {
        $found = Get-Attributes $Name
        if ($null -eq $found) { return }
        if ($found.HasFlag($reparse)) { Stop-Upload 7 "$Name is a symbolic link or junction; aibx does not write through one" }
        if ($exclusive) { Stop-Upload 7 "$Name already exists; aibx creates its temporary files only where nothing is" }
    }
    $dir = [IO.Path]::GetDirectoryName($path)
    if ($dir -and -not [IO.Directory]::Exists($dir)) { Stop-Upload 3 "parent directory does not exist: $dir" }
    Assert-Free $path
    if ([IO.Directory]::Exists($path)) { Stop-Upload 6 'the destination is a directory' }
    # what an attempt cut short (a restart) left under this run's name goes if it is a plain file
    $left = Get-Attributes $part
    if ($null -ne $left -and -not ($left.HasFlag($reparse) -or $left.HasFlag([IO.FileAttributes]::Directory))) {
        try { [IO.File]::Delete($part) } catch { }
    }
    try {
        $out = [IO.File]::Open($part, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
        $created = $true
    } catch { Stop-Upload 5 $_.Exception.Message }
}
process {
    if ($_) {
        try {
            $bytes = [Convert]::FromBase64String($_)
            $out.Write($bytes, 0, $bytes.Length)
        } catch { Stop-Upload 5 $_.Exception.Message }
    }
}
end {
    try {
        $out.Dispose()
        $out = $null
        $hasher = [Security.Cryptography.SHA256]::Create()
        $stream = [IO.File]::OpenRead($part)
        try { $got = -join ($hasher.ComputeHash($stream) | ForEach-Object { $_.ToString('x2') }) } finally { $stream.Dispose() }
        if ($got -ne $sha256) { Stop-Upload 4 "sha256 mismatch: got $got, expected $sha256" }
        Assert-Free $path
        if (-not $exclusive -and [IO.File]::Exists($path)) { [IO.File]::Delete($path) }
        [IO.File]::Move($part, $path)
        $created = $false
    } catch { Stop-Upload 5 $_.Exception.Message }
    [Console]::Out.WriteLine("AIBX-UPLOAD-OK $got")
}

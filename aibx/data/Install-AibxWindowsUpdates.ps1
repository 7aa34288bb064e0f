<#
.SYNOPSIS
    One round of Windows Update for aibx's WindowsUpdate customizer: search, filter, download, install.

.DESCRIPTION
    Runs as SYSTEM (aibx starts it through Invoke-AibxScript.ps1 -RunAs System) and drives the Windows Update
    Agent API (Microsoft.Update.Session). aibx's engine runs rounds until nothing applicable is left, restarting
    the VM when a round says so, with a bound on the number of rounds.

    -Filters are "include:EXPR" or "exclude:EXPR", EXPR a PowerShell expression over the update ($_, an
    IUpdate). For each update the first filter whose expression is true decides; an update no filter matches is
    skipped (as AIB's Packer plugin does). The default is @('include:$true'): everything the search finds.
    -UpdateLimit caps the updates installed in this round; the rest are left for the next round.

    Output: progress lines, then one line "AIBX-WU-RESULT {json}" with status ("none", "installed",
    "reboot-required" or "error"), the counts, rebootRequired, more (updates left for another round), each
    selected update with its result and HRESULT, and a message. Exit code 0, or 1 for status "error".
    Nothing loops without a bound: the search is tried at most -SearchAttempts times.
#>
[CmdletBinding()]
param(
    [string] $SearchCriteria = 'BrowseOnly=0 and IsInstalled=0',
    [string[]] $Filters = @('include:$true'),
    [ValidateRange(1, 100000)]
    [int] $UpdateLimit = 1000,
    [ValidateRange(1, 10)]
    [int] $SearchAttempts = 3,
    [ValidateRange(0, 600)]
    [int] $RetryDelaySeconds = 15
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# HRESULTs users meet, with what to do about them
$HResultText = @{
    '80240016' = 'WU_E_INSTALL_NOT_ALLOWED: another installation is running or a restart is pending; add a WindowsRestart before this step'
    '80240022' = 'WU_E_ALL_UPDATES_FAILED: every update in the batch failed'
    '8024000B' = 'WU_E_CALL_CANCELLED: the operation was cancelled'
    '8024001E' = 'WU_E_SERVICE_STOP: the Windows Update service stopped (shutdown in progress?)'
    '80240017' = 'WU_E_NOT_APPLICABLE: the update does not apply to this machine'
    '8024402C' = 'WU_E_PT_WINHTTP_NAME_NOT_RESOLVED: the update server name does not resolve (DNS or proxy)'
    '8024402F' = 'WU_E_PT_ECP_SUCCEEDED_WITH_ERRORS: external cab processing had errors'
    '80244022' = 'WU_E_PT_HTTP_STATUS_SERVICE_UNAVAIL: the update service is unavailable (HTTP 503)'
    '80240438' = 'WU_E_PT_ENDPOINT_UNREACHABLE: no route to the update service'
    '80246007' = 'WU_E_DM_NOTDOWNLOADED: the update was not downloaded'
    '80242016' = 'WU_E_UH_POSTREBOOTUNEXPECTEDSTATE: the update was in an unexpected state after the restart'
    '80070005' = 'E_ACCESSDENIED: access denied (not running as SYSTEM?)'
    '80070422' = 'the Windows Update service is disabled'
    '80070BC9' = 'ERROR_FAIL_REBOOT_REQUIRED: a restart is required first'
    '80072EE2' = 'ERROR_INTERNET_TIMEOUT: the update server did not answer in time'
    '80072EFD' = 'ERROR_INTERNET_CANNOT_CONNECT: cannot connect to the update server'
    '800F0922' = 'CBS_E_INSTALLERS_FAILED: servicing failed (the system reserved partition may be too small)'
}

function Format-HResult([long] $Code) {
    $hex = '{0:X8}' -f ($Code -band [long]4294967295)   # the unsigned 32 bits
    if ($HResultText.ContainsKey($hex)) { return "0x$hex $($HResultText[$hex])" }
    return "0x$hex"
}

function Write-Progress-Line([string] $Text) {
    [Console]::Out.WriteLine("aibx-wu: $Text")
}

function Write-Result([hashtable] $Result) {
    $json = ConvertTo-Json -InputObject $Result -Compress -Depth 5
    [Console]::Out.WriteLine("AIBX-WU-RESULT $json")
    if ($Result.status -eq 'error') { exit 1 }
    exit 0
}

function Test-RebootPending {
    if ((New-Object -ComObject Microsoft.Update.SystemInfo).RebootRequired) { return 'Windows Update' }
    $keys = @(
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending',
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
    )
    foreach ($key in $keys) {
        if (Test-Path -LiteralPath $key) { return $key }
    }
    return $null
}

function Get-Kb($Update) {
    $ids = @($Update.KBArticleIDs | ForEach-Object { "KB$_" })
    return ($ids -join ',')
}

$result = @{
    status = 'none'; found = 0; selected = 0; skipped = 0; installed = 0; failed = 0
    rebootRequired = $false; more = $false; updates = @(); message = ''
}

try {
    $pending = Test-RebootPending
    if ($pending) {
        Write-Progress-Line "a restart is pending ($pending); restarting before searching"
        $result.status = 'reboot-required'
        $result.rebootRequired = $true
        $result.message = "a restart was pending before the search ($pending)"
        Write-Result $result
    }

    $rules = @()
    foreach ($filter in $Filters) {
        if ($filter -notmatch '^\s*(include|exclude)\s*:(.+)$') {
            throw "filter '$filter' is not include:EXPRESSION or exclude:EXPRESSION"
        }
        $rules += , @($Matches[1].ToLowerInvariant(), [ScriptBlock]::Create($Matches[2]), $filter)
    }

    $session = New-Object -ComObject Microsoft.Update.Session
    $session.ClientApplicationID = 'aibx'
    $searcher = $session.CreateUpdateSearcher()
    Write-Progress-Line "searching: $SearchCriteria"
    $search = $null
    for ($attempt = 1; $attempt -le $SearchAttempts; $attempt++) {
        try {
            $search = $searcher.Search($SearchCriteria)
            if ($search.ResultCode -eq 2 -or $search.ResultCode -eq 3) { break }  # succeeded (with errors)
            $why = "result code $($search.ResultCode)"
        } catch {
            $why = Format-HResult $_.Exception.HResult
            if ($_.Exception.HResult -eq 0x80240016 -or $_.Exception.HResult -eq 0x80070BC9) {
                $result.status = 'reboot-required'
                $result.rebootRequired = $true
                $result.message = "search refused: $why"
                Write-Result $result
            }
        }
        $search = $null
        if ($attempt -lt $SearchAttempts) {
            Write-Progress-Line "search attempt $attempt of $SearchAttempts failed ($why); retrying in $RetryDelaySeconds s"
            Start-Sleep -Seconds $RetryDelaySeconds
        } else {
            throw "search failed $SearchAttempts times: $why"
        }
    }
    if ($search.ResultCode -eq 3) { Write-Progress-Line 'the search succeeded with errors; using what it found' }

    $toInstall = New-Object -ComObject Microsoft.Update.UpdateColl
    $result.found = $search.Updates.Count
    foreach ($update in $search.Updates) {
        $decision = $null
        foreach ($rule in $rules) {
            if (@($update | Where-Object -FilterScript $rule[1]).Count -gt 0) { $decision = $rule; break }
        }
        $label = "$(Get-Kb $update) $($update.Title)".Trim()
        if ($null -eq $decision) {
            $result.skipped++
            Write-Progress-Line "  skip (no filter matched)  $label"
            continue
        }
        if ($decision[0] -eq 'exclude') {
            $result.skipped++
            Write-Progress-Line "  skip ($($decision[2]))  $label"
            continue
        }
        if ($update.InstallationBehavior.CanRequestUserInput) {
            $result.skipped++
            Write-Progress-Line "  skip (needs user input)  $label"
            continue
        }
        if ($toInstall.Count -ge $UpdateLimit) {
            $result.more = $true
            Write-Progress-Line "  later (updateLimit $UpdateLimit reached)  $label"
            continue
        }
        if (-not $update.EulaAccepted) { $update.AcceptEula() }
        $null = $toInstall.Add($update)
        Write-Progress-Line "  install  $label"
    }
    $result.selected = $toInstall.Count
    Write-Progress-Line ("found $($result.found), selected $($result.selected), skipped $($result.skipped)" +
        $(if ($result.more) { ', more left for the next round' } else { '' }))
    if ($toInstall.Count -eq 0) {
        $result.message = 'no applicable updates left'
        Write-Result $result
    }

    $megabytes = [math]::Round((@($toInstall) | Measure-Object -Property MaxDownloadSize -Sum).Sum / 1048576, 1)
    Write-Progress-Line "downloading $($toInstall.Count) updates (up to $megabytes MB)"
    $downloader = $session.CreateUpdateDownloader()
    $downloader.Updates = $toInstall
    $download = $downloader.Download()
    $ready = New-Object -ComObject Microsoft.Update.UpdateColl
    $entries = @{}
    for ($i = 0; $i -lt $toInstall.Count; $i++) {
        $update = $toInstall.Item($i)
        $item = [ordered]@{
            id = $update.Identity.UpdateID; kb = (Get-Kb $update); title = $update.Title
            result = 'downloaded'; hresult = ''
        }
        $entries[$update.Identity.UpdateID] = $item
        $r = $download.GetUpdateResult($i)
        if ($update.IsDownloaded -or $r.ResultCode -eq 2 -or $r.ResultCode -eq 3) {
            $null = $ready.Add($update)
        } else {
            $item.result = 'download-failed'
            $item.hresult = Format-HResult $r.HResult
            $result.failed++
            Write-Progress-Line "  download failed: $($item.kb) $($item.title): $($item.hresult)"
        }
    }

    if ($ready.Count -gt 0) {
        Write-Progress-Line "installing $($ready.Count) updates"
        $installer = $session.CreateUpdateInstaller()
        $installer.Updates = $ready
        $install = $installer.Install()
        for ($i = 0; $i -lt $ready.Count; $i++) {
            $update = $ready.Item($i)
            $item = $entries[$update.Identity.UpdateID]
            $r = $install.GetUpdateResult($i)
            if ($r.ResultCode -eq 2 -or $r.ResultCode -eq 3) {
                $item.result = 'installed'
                $result.installed++
            } else {
                $item.result = 'install-failed'
                $item.hresult = Format-HResult $r.HResult
                $result.failed++
            }
            Write-Progress-Line "  $($item.result): $($item.kb) $($item.title) $($item.hresult)".TrimEnd()
        }
        $result.rebootRequired = [bool]$install.RebootRequired
    }
    $result.updates = @($entries.Values)
    if (-not $result.rebootRequired -and $result.installed -gt 0 -and (Test-RebootPending)) {
        $result.rebootRequired = $true
    }
    $result.status = $(if ($result.rebootRequired) { 'reboot-required' } elseif ($result.installed -gt 0) { 'installed' } else { 'none' })
    if ($result.installed -eq 0 -and $result.failed -gt 0) {
        $result.status = 'error'
        $result.message = "no update could be installed ($($result.failed) failed)"
    } else {
        $result.message = "installed $($result.installed), failed $($result.failed)" +
            $(if ($result.rebootRequired) { '; a restart is required' } else { '' })
    }
    Write-Progress-Line $result.message
    Write-Result $result
} catch {
    $hr = $_.Exception.HResult
    $result.status = 'error'
    $result.message = "$($_.Exception.Message) ($(Format-HResult $hr))"
    Write-Progress-Line "error: $($result.message)"
    Write-Result $result
}
